// Input: one set of argument values for a function of a given Signature, and
// how it is placed in a sandbox (buffers flush against the trailing guard
// page, or against the leading one).
//
// Thread-safety: plain values.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "emulator/signature.h"

namespace patchlab::emulator {

// One argument, by the parameter's kind:
//   integer (up to 8 bytes)  `value`, sign-extended from its width
//   __int128                 `bytes`: 16, little-endian
//   pointer                  `is_null`, or `bytes`: the pointee (a cstring's NUL
//                            not included)
//   float, double            `value`: the bits (a float's in the low 32)
//   long double, _Float128   `bytes`: the 16-byte image (float_value.h)
//   struct or union          `bytes`: the record's image
//   function pointer         `value`: the generated callback's behaviour
//                            (callback.h); unused with `fn = NAME`
struct ArgValue {
  uint64_t value = 0;
  bool is_null = false;
  std::vector<uint8_t> bytes;
};

struct Input {
  std::vector<ArgValue> args;  // one per Signature::params
  // Buffers start at their page's start (an under-read faults) instead of
  // ending at its end (an over-read faults).
  bool leading = false;
};

// Bytes a pointer argument occupies in its page (a cstring's NUL included).
uint64_t PlacedSize(const Param& p, const ArgValue& v);

// The argument's image (call_plan.h) for a value passed by value: an
// integer's or float's bytes, a record's, a pointer's or callback's
// `address`.
std::vector<uint8_t> ArgImage(const Param& p, const ArgValue& v, uint64_t address);

// Whether `value` holds the argument (the others keep it in `bytes`).
bool HeldInValue(const Param& p);

// "buf=\"ab\\x00\" (3 bytes), len=3, o=<24 bytes: 00 00 ...>, leading guard".
std::string RenderInput(const Signature& sig, const Input& in);

// Integer value of `v` as the parameter's type reads it (sign-extended).
int64_t SignedValue(const Param& p, uint64_t v);
// The same for a value of `width` bytes.
int64_t SignedValueOf(int width, bool is_signed, uint64_t v);

}  // namespace patchlab::emulator

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

struct ArgValue {
  uint64_t value = 0;          // integers (sign-extended from their width)
  bool is_null = false;        // pointers: pass NULL
  std::vector<uint8_t> bytes;  // pointers: the pointee (a cstring's NUL not included)
};

struct Input {
  std::vector<ArgValue> args;  // one per Signature::params
  // Buffers start at their page's start (an under-read faults) instead of
  // ending at its end (an over-read faults).
  bool leading = false;
};

// Bytes a pointer argument occupies in its page (a cstring's NUL included).
uint64_t PlacedSize(const Param& p, const ArgValue& v);

// "buf=\"ab\\x00\" (3 bytes), len=3, o=<24 bytes: 00 00 ...>, leading guard".
std::string RenderInput(const Signature& sig, const Input& in);

// Integer value of `v` as the parameter's type reads it (sign-extended).
int64_t SignedValue(const Param& p, uint64_t v);
// The same for a value of `width` bytes.
int64_t SignedValueOf(int width, bool is_signed, uint64_t v);

}  // namespace patchlab::emulator

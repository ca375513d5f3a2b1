// Signature: what the checker needs to know about a function's C prototype to
// call it under the SysV x86-64 ABI and to generate inputs for it.
//
// ParseSignature reads a C prototype such as
//   "int parse(const char *buf, size_t len, struct out *o /* 24 bytes */)"
// and recognises integer widths and signedness, pointers and their const-ness,
// fixed-size pointees (`T *`, `T x[N]`, `struct X *p /* N bytes */`),
// (pointer, length) pairs and NUL-terminated strings.
//
// Annotations go in a comment inside the parameter, comma separated:
//   N bytes          the pointee is N bytes long
//   len(NAME)        this integer is the length of pointer parameter NAME
//   cstring          a NUL-terminated string
//   buffer           not a string, even though it is a char pointer
//   nonnull          never pass NULL for this pointer
// Without annotations: an integer parameter named len, length, size, n, count,
// nbytes, cap, capacity or ending in _len/_size/len right after a pointer
// without a fixed size is that pointer's length; a `const char *` with no
// length is a cstring. A pointer whose size cannot be known (void *, struct
// without annotation) is refused, naming the parameter.
//
// Thread-safety: plain values and a pure function.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace patchlab::emulator {

// At most this many bytes are generated for one buffer (and mapped for it).
inline constexpr uint64_t kMaxBufferBytes = 4096;

struct Param {
  std::string name;       // "arg2" when the prototype has none
  std::string type_text;  // as written, for reports
  bool is_pointer = false;
  int width = 8;  // integers: 1, 2, 4 or 8 bytes; pointers: 8
  bool is_signed = false;
  // Pointers only.
  bool pointee_const = false;
  uint64_t fixed_size = 0;  // bytes of the pointee; 0 with length_param or cstring
  int length_param = -1;    // index of the integer that holds this buffer's length
  bool cstring = false;
  bool nonnull = false;
  bool pointer_slots = false;  // points at pointers: generated as zeros, not random
  bool byte_pointee = false;   // char-like pointee: may be a string
  // Integers only: index of the pointer parameter this one measures, or -1.
  int length_of = -1;
};

struct Signature {
  std::string name;   // function name as written
  std::string text;   // the prototype, normalised to one line
  int ret_width = 0;  // 0: void
  bool ret_signed = false;
  bool ret_pointer = false;
  std::vector<Param> params;  // at most 6 (register arguments only)
};

// Parses a C prototype. On failure: kParse (or kUnsupported for floating-point
// types, more than six parameters, variadic functions and struct values) with a
// message naming the parameter and the column.
Result<Signature> ParseSignature(std::string_view prototype);

// Completes pairing and string heuristics and checks that every pointer has a
// knowable size. Called by ParseSignature; the DWARF reader calls it too.
Status FinishSignature(Signature& sig);

}  // namespace patchlab::emulator

// Signature: what the checker needs to know about a function's C prototype to
// call it under the SysV x86-64 ABI and to generate inputs for it.
//
// ParseSignature reads a C prototype such as
//   "int parse(const char *buf, size_t len, struct out *o /* 24 bytes */)"
// Types: integers of every width and signedness (<stdint.h> names, size_t,
// bool, enums, __int128), float, double, long double (x87), _Float128,
// pointers, function pointers (`int (*cmp)(const void *, const void *)`),
// and structs and unions passed or returned by value, defined before the
// prototype in the same text:
//   "struct point { double x, y; }; double norm(struct point p)"
// Any number of parameters (the ones past the registers go on the stack).
// A variadic function is called with its fixed parameters and the variadic
// arguments named in a comment on the ellipsis:
//   "int logf(const char *fmt, ... /* int, double */)"
// (default promotions apply: float is passed as double, char and short as int).
//
// Annotations go in a comment inside the parameter, comma separated:
//   N bytes          the pointee is N bytes long
//   len(NAME)        this integer is the length of pointer parameter NAME
//   cstring          a NUL-terminated string
//   buffer           not a string, even though it is a char pointer
//   nonnull          never pass NULL for this pointer
//   fn = NAME        (a function pointer) pass the function NAME of the
//                    checked file instead of a generated callback
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
// At most this many bytes of arguments are passed on the stack.
inline constexpr uint64_t kMaxStackArgBytes = 2048;
// At most this many parameters (each pointer has its own argument page).
inline constexpr size_t kMaxParams = 24;

enum class ValueKind {
  kVoid,
  kInteger,  // of `width` bytes (1, 2, 4, 8; 16 for __int128)
  kPointer,
  kFloat,     // see FloatFormat
  kRecord,    // a struct or union by value (RecordType)
  kFunction,  // a function pointer
};

enum class FloatFormat {
  kNone,
  kSingle,  // float, 4 bytes
  kDouble,  // double, 8 bytes
  kX87,     // long double: 80 bits in 16 bytes
  kQuad,    // _Float128, 16 bytes
};

// One scalar member of a record (arrays and nested records flattened).
struct Leaf {
  uint64_t offset = 0;
  int size = 0;                          // bytes
  ValueKind kind = ValueKind::kInteger;  // kInteger, kPointer or kFloat
  FloatFormat format = FloatFormat::kNone;
  bool is_signed = false;
};

// A struct or union passed or returned by value.
struct RecordType {
  std::string name;  // "struct point"
  uint64_t size = 0;
  uint64_t align = 1;
  std::vector<Leaf> leaves;  // by offset; a union's members overlap
};

// What a function-pointer parameter points to, as far as a generated
// callback needs it.
struct CallbackType {
  std::vector<ValueKind> params;  // kInteger, kPointer, kFloat (others: kInteger)
  int ret_width = 4;              // 0: void
  bool ret_signed = true;
};

struct Param {
  std::string name;       // "arg2" when the prototype has none
  std::string type_text;  // as written, for reports
  ValueKind kind = ValueKind::kInteger;
  bool is_pointer = false;  // kind == kPointer
  // Integers: 1, 2, 4, 8 or 16 bytes; pointers 8; floats 4, 8 or 16;
  // records their size.
  int width = 8;
  bool is_signed = false;
  FloatFormat format = FloatFormat::kNone;  // kFloat
  RecordType record;                        // kRecord
  // kFunction: the function of the checked file passed (`fn = NAME`), or
  // empty for a generated callback described by `callback`.
  std::string callback_target;
  CallbackType callback;
  // Passed as a variadic argument (after the fixed ones).
  bool variadic = false;
  // Pointers only.
  bool pointee_const = false;
  uint64_t fixed_size = 0;  // bytes of the pointee; 0 with length_param or cstring
  int length_param = -1;    // index of the integer that holds this buffer's length
  bool cstring = false;
  bool nonnull = false;
  bool pointer_slots = false;  // points at pointers: generated as zeros, not random
  // Points at a struct whose layout is known: the offsets of its pointer
  // members, generated as NULL (random bytes there are wild pointers that
  // only make both sides fault the same way).
  std::vector<uint64_t> null_offsets;
  bool byte_pointee = false;  // char-like pointee: may be a string
  // Integers only: index of the pointer parameter this one measures, or -1.
  int length_of = -1;
};

struct Signature {
  std::string name;  // function name as written
  std::string text;  // the prototype, normalised to one line
  ValueKind ret_kind = ValueKind::kVoid;
  int ret_width = 0;  // bytes; 0: void
  bool ret_signed = false;
  bool ret_pointer = false;
  FloatFormat ret_format = FloatFormat::kNone;  // kFloat
  RecordType ret_record;                        // kRecord
  std::vector<Param> params;
  // Declared with `...`: the parameters marked `variadic` are the variadic
  // arguments passed.
  bool variadic = false;
};

// The bytes a value of `format` takes in memory (4, 8, 16 or 16).
int FloatBytes(FloatFormat format);
// "float", "double", "long double", "_Float128".
std::string_view FloatFormatName(FloatFormat format);

// Parses a C prototype (with the struct and union definitions it uses before
// it). On failure: kParse (or kUnsupported for what the checker cannot call,
// e.g. a variadic function without its arguments, or more than
// kMaxStackArgBytes of stack arguments) with a message naming the parameter
// and the column.
Result<Signature> ParseSignature(std::string_view prototype);

// Completes pairing and string heuristics and checks that every pointer has a
// knowable size and that the call can be made (call_plan.h). Called by
// ParseSignature; the DWARF reader calls it too.
Status FinishSignature(Signature& sig);

}  // namespace patchlab::emulator

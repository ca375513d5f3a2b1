// Reading C declarations for --sig (signature.h): the tokens of a
// prototype, one declaration's type (base type, qualifiers, pointers, an
// array suffix, its name and annotation comments), and struct and union
// definitions laid out as the SysV ABI lays them out.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "emulator/signature.h"

namespace patchlab::emulator::internal {

struct Token {
  enum Kind { kWord, kNumber, kPunct, kComment, kEllipsis } kind;
  std::string text;
  size_t column;  // 1-based
};

// Splits a prototype into tokens. Fails (kParse) naming the column of a
// character C declarations do not use or an unterminated comment.
Result<std::vector<Token>> Tokenize(std::string_view s);

struct ScalarType {
  int width;
  bool is_signed;
};

// One declaration: a parameter, a member or the function itself (type + name).
struct Decl {
  std::string type_text;
  std::string name;
  int pointer_depth = 0;
  bool base_const = false;  // const applies to the pointee (const T *)
  bool is_void = false;
  bool is_record = false;  // struct or union
  bool is_union = false;
  std::string tag;  // a struct's or union's tag
  bool is_float = false;
  FloatFormat float_format = FloatFormat::kNone;
  bool int128 = false;  // __int128 (scalar width 16)
  std::optional<ScalarType> scalar;
  uint64_t array_len = 0;  // T x[N]
  std::vector<std::string> annotations;
  size_t column = 0;
  // A function pointer `RET (*name)(PARAMS)`: the tokens of PARAMS, and RET
  // (in the other fields, pointer_depth counting its own stars only).
  bool function_pointer = false;
  std::vector<Token> function_params;
};

// Parses one declaration from its tokens; `column` names it in errors.
Result<Decl> ParseDecl(const std::vector<Token>& toks, size_t column);

// Struct and union definitions by tag ("point" for `struct point`).
using RecordTable = std::map<std::string, RecordType, std::less<>>;

// Parses `struct NAME { MEMBERS };` or `union NAME { ... };` (the tokens
// without the ';') into `records`: members are scalars, pointers, arrays of
// them and records defined before, laid out in order at their alignment.
// Fails naming the member or column it cannot read.
Status ParseRecordDefinition(const std::vector<Token>& toks, RecordTable& records);

// The layout of a declared value (a member or a parameter by value):
// size, alignment and scalar leaves. Fails for a record tag not in `records`.
Status LayOut(const Decl& d, const RecordTable& records, RecordType& out);

}  // namespace patchlab::emulator::internal

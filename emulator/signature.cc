#include "emulator/signature.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>

#include "emulator/call_plan.h"
#include "emulator/internal/c_decl.h"

namespace patchlab::emulator {
namespace {

using internal::Decl;
using internal::ParseDecl;
using internal::RecordTable;
using internal::Token;
using internal::Tokenize;

bool IsLengthName(std::string_view n) {
  for (std::string_view k : {"len", "length", "size", "n", "count", "nbytes", "cap", "capacity",
                             "buflen", "bufsize", "nmemb", "sz"}) {
    if (n == k) return true;
  }
  auto ends = [&](std::string_view suf) {
    return n.size() > suf.size() && n.substr(n.size() - suf.size()) == suf;
  };
  return ends("_len") || ends("_size") || ends("len") || ends("_count") || ends("_bytes");
}

}  // namespace

int FloatBytes(FloatFormat format) {
  switch (format) {
    case FloatFormat::kSingle:
      return 4;
    case FloatFormat::kDouble:
      return 8;
    case FloatFormat::kX87:
    case FloatFormat::kQuad:
      return 16;
    case FloatFormat::kNone:
      break;
  }
  return 0;
}

std::string_view FloatFormatName(FloatFormat format) {
  switch (format) {
    case FloatFormat::kSingle:
      return "float";
    case FloatFormat::kDouble:
      return "double";
    case FloatFormat::kX87:
      return "long double";
    case FloatFormat::kQuad:
      return "_Float128";
    case FloatFormat::kNone:
      break;
  }
  return "?";
}

Status FinishSignature(Signature& sig) {
  if (sig.params.size() > kMaxParams) {
    return Fail(ErrorCode::kUnsupported, "{}: {} parameters; at most {} are supported", sig.name,
                sig.params.size(), kMaxParams);
  }
  if (sig.ret_kind == ValueKind::kRecord && sig.ret_record.size > kMaxBufferBytes) {
    return Fail(ErrorCode::kUnsupported, "{}: returns {} of {} bytes; at most {} are supported",
                sig.name, sig.ret_record.name, sig.ret_record.size, kMaxBufferBytes);
  }
  for (const Param& p : sig.params) {
    if (p.kind == ValueKind::kVoid) {
      return Fail(ErrorCode::kInvalidArgument, "{}: parameter '{}' has type void", sig.name,
                  p.name);
    }
  }
  for (size_t i = 0; i < sig.params.size(); ++i) {
    Param& p = sig.params[i];
    if (!p.is_pointer || p.fixed_size != 0 || p.length_param >= 0 || p.cstring) continue;
    if (i + 1 < sig.params.size()) {
      Param& next = sig.params[i + 1];
      if (!next.is_pointer && next.length_of < 0 && IsLengthName(next.name)) {
        next.length_of = static_cast<int>(i);
        p.length_param = static_cast<int>(i + 1);
      }
    }
  }
  for (Param& p : sig.params) {
    if (!p.is_pointer || p.fixed_size != 0 || p.length_param >= 0 || p.cstring) continue;
    if (p.byte_pointee && !p.pointer_slots) {
      p.cstring = true;
      continue;
    }
    return Fail(ErrorCode::kInvalidArgument,
                "{}: parameter '{}' ({}): the size of what it points to is unknown; "
                "annotate it, e.g. /* 24 bytes */, or pass its length next to it",
                sig.name, p.name, p.type_text);
  }
  for (const Param& p : sig.params) {
    if (p.fixed_size > kMaxBufferBytes) {
      return Fail(ErrorCode::kUnsupported,
                  "{}: parameter '{}' is {} bytes; at most {} are supported", sig.name, p.name,
                  p.fixed_size, kMaxBufferBytes);
    }
  }
  // The call must be one the sandbox can make (stack arguments, returns).
  if (auto plan = PlanCall(sig); !plan) return std::unexpected(plan.error());
  return {};
}

namespace {

// The tokens of the parameter list: `open` is the first '(' and `close` its
// matching ')', after which only a ';' or comments may follow.
struct ParameterList {
  size_t open = 0;
  size_t close = 0;
};

Result<ParameterList> FindParameterList(const std::vector<Token>& t) {
  ParameterList list;
  while (list.open < t.size() && t[list.open].text != "(") ++list.open;
  if (list.open == t.size()) return Fail(ErrorCode::kParse, "no '(' in the prototype");
  list.close = t.size();
  int depth = 0;
  for (size_t i = list.open; i < t.size(); ++i) {
    if (t[i].text == "(") ++depth;
    if (t[i].text == ")" && --depth == 0) {
      list.close = i;
      break;
    }
  }
  if (list.close == t.size()) return Fail(ErrorCode::kParse, "no matching ')'");
  for (size_t i = list.close + 1; i < t.size(); ++i) {
    if (t[i].text != ";" && t[i].kind != Token::kComment) {
      return Fail(ErrorCode::kParse, "column {}: unexpected '{}' after ')'", t[i].column,
                  t[i].text);
    }
  }
  return list;
}

// The function's name and return type, from the tokens before '('.
Status ParseReturn(const std::vector<Token>& head_tokens, const RecordTable& records,
                   Signature& sig) {
  auto head = ParseDecl(head_tokens, 1);
  if (!head) return std::unexpected(head.error());
  if (head->name.empty()) return Fail(ErrorCode::kParse, "the function has no name");
  sig.name = head->name;
  if (head->pointer_depth == 0 && (head->is_record || head->is_float || head->int128)) {
    RecordType layout;
    if (auto s = internal::LayOut(*head, records, layout); !s) return s;
    sig.ret_width = static_cast<int>(layout.size);
    if (head->is_float) {
      sig.ret_kind = ValueKind::kFloat;
      sig.ret_format = head->float_format;
    } else if (head->int128) {
      sig.ret_kind = ValueKind::kInteger;
      sig.ret_signed = head->scalar->is_signed;
    } else {
      sig.ret_kind = ValueKind::kRecord;
      sig.ret_record = std::move(layout);
    }
    return {};
  }
  if (head->pointer_depth > 0) {
    sig.ret_kind = ValueKind::kPointer;
    sig.ret_width = 8;
    sig.ret_pointer = true;
  } else if (!head->is_void) {
    sig.ret_kind = ValueKind::kInteger;
    sig.ret_width = head->scalar->width;
    sig.ret_signed = head->scalar->is_signed;
  }
  return {};
}

// The tokens of each parameter, split at top-level commas; none for `()` and `(void)`.
std::vector<std::vector<Token>> SplitParameters(const std::vector<Token>& t,
                                                const ParameterList& list) {
  std::vector<std::vector<Token>> groups(1);
  int depth = 0;  // a function pointer's own parameters hold commas too
  for (size_t i = list.open + 1; i < list.close; ++i) {
    if (t[i].text == "(") ++depth;
    if (t[i].text == ")") --depth;
    if (t[i].text == "," && depth == 0)
      groups.emplace_back();
    else
      groups.back().push_back(t[i]);
  }
  if (groups.size() == 1 && groups[0].empty()) groups.clear();
  if (groups.size() == 1 && groups[0].size() == 1 && groups[0][0].text == "void") groups.clear();
  return groups;
}

// The type of a pointer (or array) parameter: what it points to and how big.
void SetPointerType(const Decl& d, Param& p) {
  p.kind = ValueKind::kPointer;
  p.is_pointer = true;
  p.width = 8;
  int depth = d.pointer_depth + (d.array_len > 0 ? 1 : 0);
  p.pointee_const = d.base_const && depth == 1;
  if (depth > 1) {
    p.pointer_slots = true;
    p.fixed_size = 8 * std::max<uint64_t>(1, d.array_len);
  } else if (d.array_len > 0 && d.scalar) {
    p.fixed_size = d.array_len * d.scalar->width;
  } else if (d.scalar && !(d.scalar->width == 1)) {
    p.fixed_size = d.scalar->width;
  }
  // char * stays unsized: a string or a (pointer, length) pair.
  p.byte_pointee = depth == 1 && d.array_len == 0 && d.scalar && d.scalar->width == 1 &&
                   d.type_text.find("char") != std::string::npos;
}

// Pointer name -> the integer parameters annotated len(NAME).
using LengthAnnotations = std::map<std::string, std::vector<std::string>>;

// Applies one annotation of parameter `p` (see signature.h).
Status ApplyAnnotation(const std::string& a, bool pointer, Param& p, LengthAnnotations& lengths) {
  uint64_t n = 0;
  char unit[16] = {0};
  char target[64] = {0};
  if (std::sscanf(a.c_str(), "%lu %15s", &n, unit) == 2 &&
      (std::string(unit) == "bytes" || std::string(unit) == "byte")) {
    if (!pointer)
      return Fail(ErrorCode::kParse, "parameter '{}': '{}' on a non-pointer", p.name, a);
    p.fixed_size = n;
    p.pointer_slots = false;
  } else if (std::sscanf(a.c_str(), "len(%63[A-Za-z0-9_])", target) == 1) {
    if (pointer) return Fail(ErrorCode::kParse, "parameter '{}': '{}' on a pointer", p.name, a);
    lengths[target].push_back(p.name);
  } else if (std::sscanf(a.c_str(), "fn = %63[A-Za-z0-9_:]", target) == 1 ||
             std::sscanf(a.c_str(), "fn=%63[A-Za-z0-9_:]", target) == 1) {
    if (p.kind != ValueKind::kFunction)
      return Fail(ErrorCode::kParse, "parameter '{}': '{}' on a non-function pointer", p.name, a);
    p.callback_target = target;
  } else if (a == "cstring") {
    p.cstring = true;
  } else if (a == "buffer") {
    p.byte_pointee = false;
  } else if (a == "nonnull") {
    p.nonnull = true;
  } else if (a == "out" || a == "in" || a == "inout") {
    // Documentation only: every buffer is both generated and compared.
  } else {
    return Fail(ErrorCode::kParse,
                "parameter '{}': unknown annotation '{}' (known: N bytes, len(NAME), "
                "cstring, buffer, nonnull, in, out, inout, fn = NAME)",
                p.name, a);
  }
  return {};
}

// The prototype of a function pointer's target, from its parameter tokens.
Result<CallbackType> ParseCallbackType(const Decl& d) {
  CallbackType cb;
  cb.ret_width = d.pointer_depth > 0 ? 8
                 : d.is_void         ? 0
                 : d.scalar          ? std::min(d.scalar->width, 8)
                                     : 8;
  cb.ret_signed = d.scalar && d.scalar->is_signed;
  std::vector<Token> param;
  auto flush = [&]() -> Status {
    if (param.empty() || (param.size() == 1 && param[0].text == "void")) return {};
    auto p = ParseDecl(param, param[0].column);
    if (!p) return std::unexpected(p.error());
    cb.params.push_back(p->pointer_depth > 0 || p->function_pointer ? ValueKind::kPointer
                        : p->is_float                               ? ValueKind::kFloat
                                                                    : ValueKind::kInteger);
    param.clear();
    return {};
  };
  int depth = 0;
  for (const Token& t : d.function_params) {
    if (t.text == "(") ++depth;
    if (t.text == ")") --depth;
    if (t.text == "," && depth == 0) {
      if (auto s = flush(); !s) return std::unexpected(s.error());
    } else {
      param.push_back(t);
    }
  }
  if (auto s = flush(); !s) return std::unexpected(s.error());
  return cb;
}

// The kind and layout of a parameter's declared type.
Status SetParamType(const Decl& d, const RecordTable& records, Param& p) {
  const bool pointer = d.pointer_depth > 0 || d.array_len > 0;
  if (d.function_pointer) {
    auto cb = ParseCallbackType(d);
    if (!cb) return std::unexpected(cb.error());
    p.kind = ValueKind::kFunction;
    p.width = 8;
    p.callback = std::move(*cb);
  } else if (pointer) {
    SetPointerType(d, p);
    // A pointer to a struct defined in the text points to that many bytes.
    if (d.is_record && d.pointer_depth == 1 && d.array_len == 0) {
      if (auto it = records.find(d.tag); it != records.end()) {
        p.fixed_size = it->second.size;
        for (const Leaf& l : it->second.leaves) {
          if (l.kind == ValueKind::kPointer) p.null_offsets.push_back(l.offset);
        }
      }
    }
  } else if (d.is_void) {
    return Fail(ErrorCode::kInvalidArgument, "parameter '{}' has type void", p.name);
  } else if (d.is_float || d.is_record || d.int128) {
    RecordType layout;
    if (auto s = internal::LayOut(d, records, layout); !s) return s;
    p.width = static_cast<int>(layout.size);
    if (d.is_float) {
      p.kind = ValueKind::kFloat;
      p.format = d.float_format;
    } else if (d.int128) {
      p.kind = ValueKind::kInteger;
      p.is_signed = d.scalar->is_signed;
    } else {
      p.kind = ValueKind::kRecord;
      p.record = std::move(layout);
    }
  } else {
    p.width = d.scalar->width;
    p.is_signed = d.scalar->is_signed;
  }
  return {};
}

// Parameter number `index` (0-based) from its tokens.
Result<Param> ParseParam(const std::vector<Token>& tokens, size_t index, const RecordTable& records,
                         LengthAnnotations& lengths) {
  if (tokens.empty()) return Fail(ErrorCode::kParse, "parameter {} is empty", index + 1);
  auto d = ParseDecl(tokens, tokens[0].column);
  if (!d) return std::unexpected(d.error().AddContext(fmt::format("parameter {}", index + 1)));
  Param p;
  p.name = d->name.empty() ? fmt::format("arg{}", index + 1) : d->name;
  p.type_text = d->type_text;
  if (auto s = SetParamType(*d, records, p); !s)
    return std::unexpected(s.error().AddContext(fmt::format("parameter {}", index + 1)));
  const bool pointer = p.kind == ValueKind::kPointer;
  for (const std::string& a : d->annotations) {
    if (auto s = ApplyAnnotation(a, pointer, p, lengths); !s) return std::unexpected(s.error());
  }
  return p;
}

// The variadic arguments named in the comment on `...` ("int, double"),
// after the default argument promotions (float to double, char and short
// to int).
Status ParseVariadic(const std::vector<Token>& group, const RecordTable& records, Signature& sig) {
  sig.variadic = true;
  if (group.size() != 2 || group[1].kind != Token::kComment) {
    return Fail(ErrorCode::kUnsupported,
                "column {}: a variadic function is called with the arguments named in a comment "
                "on the ellipsis, e.g. '... /* int, double */'",
                group[0].column);
  }
  std::string list = group[1].text;
  size_t k = 0;
  for (size_t b = 0; b <= list.size(); ++k) {
    size_t e = list.find(',', b);
    if (e == std::string::npos) e = list.size();
    auto toks = internal::Tokenize(std::string_view(list).substr(b, e - b));
    if (!toks) return std::unexpected(toks.error().AddContext("the variadic arguments"));
    b = e + 1;
    if (toks->empty()) continue;
    LengthAnnotations unused;
    auto p = ParseParam(*toks, sig.params.size(), records, unused);
    if (!p) return std::unexpected(p.error().AddContext("the variadic arguments"));
    p->name = fmt::format("vararg{}", k + 1);
    p->variadic = true;
    if (p->kind == ValueKind::kFloat && p->format == FloatFormat::kSingle) {
      p->format = FloatFormat::kDouble;
      p->width = 8;
    }
    if (p->kind == ValueKind::kInteger && p->width < 4) {
      p->width = 4;
      p->is_signed = true;
    }
    sig.params.push_back(std::move(*p));
  }
  return {};
}

// Pairs each len(NAME) integer with its pointer.
Status ApplyLengthAnnotations(const LengthAnnotations& lengths, Signature& sig) {
  for (const auto& [ptr, lens] : lengths) {
    int pi = -1, li = -1;
    for (size_t i = 0; i < sig.params.size(); ++i) {
      if (sig.params[i].name == ptr && sig.params[i].is_pointer) pi = static_cast<int>(i);
      if (sig.params[i].name == lens[0]) li = static_cast<int>(i);
    }
    if (pi < 0)
      return Fail(ErrorCode::kParse, "len({}): no pointer parameter named '{}'", ptr, ptr);
    sig.params[pi].length_param = li;
    sig.params[pi].fixed_size = 0;
    sig.params[li].length_of = pi;
  }
  return {};
}

// The top-level statements of the text (split at ';' outside braces):
// struct and union definitions, then the prototype.
std::vector<std::vector<Token>> Statements(const std::vector<Token>& t) {
  std::vector<std::vector<Token>> out(1);
  int braces = 0;
  for (const Token& tok : t) {
    if (tok.text == "{") ++braces;
    if (tok.text == "}") --braces;
    if (tok.text == ";" && braces == 0) {
      out.emplace_back();
      continue;
    }
    out.back().push_back(tok);
  }
  std::erase_if(out, [](const std::vector<Token>& s) {
    return std::all_of(s.begin(), s.end(),
                       [](const Token& x) { return x.kind == Token::kComment; });
  });
  return out;
}

bool IsRecordDefinition(const std::vector<Token>& s) {
  return s.size() >= 3 && (s[0].text == "struct" || s[0].text == "union") && s[2].text == "{";
}

Result<Signature> ParsePrototype(std::string_view prototype) {
  auto toks = Tokenize(prototype);
  if (!toks) return std::unexpected(toks.error());
  RecordTable records;
  std::vector<Token> head;
  for (std::vector<Token>& st : Statements(*toks)) {
    if (IsRecordDefinition(st)) {
      if (auto s = internal::ParseRecordDefinition(st, records); !s)
        return std::unexpected(s.error());
    } else if (head.empty()) {
      head = std::move(st);
    } else {
      return Fail(ErrorCode::kParse, "column {}: a second prototype", st[0].column);
    }
  }
  const std::vector<Token>& t = head;
  auto list = FindParameterList(t);
  if (!list) return std::unexpected(list.error());
  Signature sig;
  if (auto s = ParseReturn(std::vector<Token>(t.begin(), t.begin() + list->open), records, sig); !s)
    return std::unexpected(s.error());
  LengthAnnotations lengths;
  std::vector<std::vector<Token>> groups = SplitParameters(t, *list);
  for (size_t g = 0; g < groups.size(); ++g) {
    if (!groups[g].empty() && groups[g][0].kind == Token::kEllipsis) {
      if (g + 1 != groups.size())
        return Fail(ErrorCode::kParse, "column {}: '...' must come last", groups[g][0].column);
      if (auto s = ParseVariadic(groups[g], records, sig); !s) return std::unexpected(s.error());
      break;
    }
    auto p = ParseParam(groups[g], g, records, lengths);
    if (!p) return std::unexpected(p.error());
    sig.params.push_back(std::move(*p));
  }
  if (auto s = ApplyLengthAnnotations(lengths, sig); !s) return std::unexpected(s.error());
  std::string text = std::string(prototype);
  for (char& c : text)
    if (c == '\n' || c == '\t') c = ' ';
  sig.text = text;
  if (auto s = FinishSignature(sig); !s) return std::unexpected(s.error());
  return sig;
}

}  // namespace

Result<Signature> ParseSignature(std::string_view prototype) {
  auto sig = ParsePrototype(prototype);
  if (!sig)
    return std::unexpected(
        std::move(sig.error()).AddContext(fmt::format("signature '{}'", prototype)));
  return sig;
}

}  // namespace patchlab::emulator

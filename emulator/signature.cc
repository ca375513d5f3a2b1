#include "emulator/signature.h"

#include <cctype>
#include <charconv>
#include <map>
#include <optional>

namespace patchlab::emulator {
namespace {

struct Token {
  enum Kind { kWord, kNumber, kPunct, kComment, kEllipsis } kind;
  std::string text;
  size_t column;  // 1-based
};

Result<std::vector<Token>> Tokenize(std::string_view s) {
  std::vector<Token> out;
  size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
    } else if (s.substr(i, 2) == "/*") {
      size_t end = s.find("*/", i + 2);
      if (end == std::string_view::npos)
        return Fail(ErrorCode::kParse, "column {}: unterminated comment", i + 1);
      out.push_back({Token::kComment, std::string(s.substr(i + 2, end - i - 2)), i + 1});
      i = end + 2;
    } else if (s.substr(i, 3) == "...") {
      out.push_back({Token::kEllipsis, "...", i + 1});
      i += 3;
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
      out.push_back({Token::kWord, std::string(s.substr(i, j - i)), i + 1});
      i = j;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t j = i;
      while (j < s.size() && std::isalnum(static_cast<unsigned char>(s[j]))) ++j;
      out.push_back({Token::kNumber, std::string(s.substr(i, j - i)), i + 1});
      i = j;
    } else if (std::string_view("*,()[];").find(c) != std::string_view::npos) {
      out.push_back({Token::kPunct, std::string(1, c), i + 1});
      ++i;
    } else {
      return Fail(ErrorCode::kParse, "column {}: unexpected character '{}'", i + 1, c);
    }
  }
  return out;
}

struct ScalarType {
  int width;
  bool is_signed;
};

// Typedef names every C programmer expects to work.
const std::map<std::string, ScalarType, std::less<>>& KnownTypedefs() {
  static const auto* m = new std::map<std::string, ScalarType, std::less<>>{
      {"size_t", {8, false}},    {"ssize_t", {8, true}},    {"ptrdiff_t", {8, true}},
      {"intptr_t", {8, true}},   {"uintptr_t", {8, false}}, {"off_t", {8, true}},
      {"int8_t", {1, true}},     {"uint8_t", {1, false}},   {"int16_t", {2, true}},
      {"uint16_t", {2, false}},  {"int32_t", {4, true}},    {"uint32_t", {4, false}},
      {"int64_t", {8, true}},    {"uint64_t", {8, false}},  {"bool", {1, false}},
      {"_Bool", {1, false}},     {"u8", {1, false}},        {"u16", {2, false}},
      {"u32", {4, false}},       {"u64", {8, false}},       {"s8", {1, true}},
      {"s16", {2, true}},        {"s32", {4, true}},        {"s64", {8, true}},
      {"pid_t", {4, true}},      {"uid_t", {4, false}},     {"wchar_t", {4, true}},
      {"socklen_t", {4, false}}, {"time_t", {8, true}},
  };
  return *m;
}

// One declaration: a parameter or the function itself (type + name).
struct Decl {
  std::string type_text;
  std::string name;
  int pointer_depth = 0;
  bool base_const = false;  // const applies to the pointee (const T *)
  bool is_void = false;
  bool is_record = false;  // struct or union
  bool is_float = false;
  std::optional<ScalarType> scalar;
  uint64_t array_len = 0;  // T x[N]
  std::vector<std::string> annotations;
  size_t column = 0;
};

// A C integer literal as an array size: decimal, 0x hex or 0 octal, every
// character used. nullopt when it is not one or does not fit 64 bits.
std::optional<uint64_t> ParseArrayLength(std::string_view text) {
  int base = 10;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    base = 16;
    text.remove_prefix(2);
  } else if (text.size() > 1 && text[0] == '0') {
    base = 8;
    text.remove_prefix(1);
  }
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, base);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// Splits an annotation comment ("24 bytes, nonnull") at its commas.
std::vector<std::string> SplitAnnotations(const std::string& text) {
  std::vector<std::string> out;
  std::string a;
  for (char c : text + ",") {
    if (c == ',') {
      size_t b = a.find_first_not_of(' '), e = a.find_last_not_of(' ');
      if (b != std::string::npos) out.push_back(a.substr(b, e - b + 1));
      a.clear();
    } else {
      a += c;
    }
  }
  return out;
}

// Reads one declaration token by token: qualifiers, base type words, stars,
// an array suffix, the name and annotation comments.
class DeclParser {
 public:
  DeclParser(const std::vector<Token>& toks, size_t column) : toks_(toks) { d_.column = column; }

  Result<Decl> Parse() {
    for (i_ = 0; i_ < toks_.size(); ++i_) {
      const Token& t = toks_[i_];
      if (!d_.type_text.empty() && t.kind != Token::kComment) d_.type_text += ' ';
      Status s;
      if (t.kind == Token::kComment) {
        for (std::string& a : SplitAnnotations(t.text)) d_.annotations.push_back(std::move(a));
      } else if (t.kind == Token::kPunct && t.text == "*") {
        ++d_.pointer_depth;
        after_star_ = true;
        d_.type_text += "*";
      } else if (t.kind == Token::kPunct && t.text == "[") {
        s = Bracket(t);
      } else if (t.kind != Token::kWord) {
        return Fail(ErrorCode::kParse, "column {}: unexpected '{}'", t.column, t.text);
      } else {
        s = Word(t);
      }
      if (!s) return std::unexpected(s.error());
    }
    return Finish();
  }

 private:
  // `[N]` (an array parameter) or `[]` (a pointer).
  Status Bracket(const Token& t) {
    if (i_ + 2 < toks_.size() && toks_[i_ + 1].kind == Token::kNumber &&
        toks_[i_ + 2].text == "]") {
      const Token& size = toks_[i_ + 1];
      auto len = ParseArrayLength(size.text);
      if (!len) {
        return Fail(ErrorCode::kParse, "column {}: array size '{}' is not a number", size.column,
                    size.text);
      }
      // Any element is a byte at least: a larger array cannot fit a buffer
      // (and its size in bytes could wrap).
      if (*len > kMaxBufferBytes) {
        return Fail(ErrorCode::kUnsupported,
                    "column {}: an array of {} elements; at most {} bytes are supported",
                    size.column, *len, kMaxBufferBytes);
      }
      d_.array_len = *len;
      d_.type_text += "[" + toks_[i_ + 1].text + "]";
      i_ += 2;
      return {};
    }
    if (i_ + 1 < toks_.size() && toks_[i_ + 1].text == "]") {
      ++d_.pointer_depth;
      d_.type_text += "[]";
      ++i_;
      return {};
    }
    return Fail(ErrorCode::kParse, "column {}: array size must be a number", t.column);
  }

  bool HasBaseType() const {
    return !base_.empty() || d_.is_void || d_.is_record || d_.scalar || longs_ != 0 ||
           saw_unsigned_ || saw_signed_ || d_.is_float;
  }

  Status Word(const Token& t) {
    const std::string& w = t.text;
    d_.type_text += w;
    if (w == "const") {
      if (!after_star_) d_.base_const = true;
    } else if (w == "volatile" || w == "restrict" || w == "__restrict" || w == "register" ||
               w == "static" || w == "extern" || w == "inline") {
    } else if (w == "unsigned") {
      saw_unsigned_ = true;
    } else if (w == "signed") {
      saw_signed_ = true;
    } else if (w == "long") {
      ++longs_;
    } else if (w == "char" || w == "short" || w == "int") {
      base_ = w;
    } else if (w == "void") {
      d_.is_void = true;
    } else if (w == "float" || w == "double") {
      d_.is_float = true;
    } else if (w == "struct" || w == "union" || w == "enum") {
      return Tag(t);
    } else if (!HasBaseType()) {
      auto it = KnownTypedefs().find(w);
      if (it == KnownTypedefs().end()) {
        return Fail(ErrorCode::kParse,
                    "column {}: unknown type '{}' (use a standard C type or <stdint.h> name)",
                    t.column, w);
      }
      d_.scalar = it->second;
    } else if (d_.name.empty()) {
      d_.name = w;
      // The name is not part of the type.
      d_.type_text.resize(d_.type_text.size() - w.size());
      while (!d_.type_text.empty() && d_.type_text.back() == ' ') d_.type_text.pop_back();
    } else {
      return Fail(ErrorCode::kParse, "column {}: unexpected word '{}'", t.column, w);
    }
    return {};
  }

  // `struct X`, `union X`, `enum X`.
  Status Tag(const Token& t) {
    if (i_ + 1 >= toks_.size() || toks_[i_ + 1].kind != Token::kWord) {
      return Fail(ErrorCode::kParse, "column {}: '{}' needs a tag name", t.column, t.text);
    }
    if (t.text == "enum")
      d_.scalar = ScalarType{4, true};
    else
      d_.is_record = true;
    d_.type_text += " " + toks_[i_ + 1].text;
    ++i_;
    return {};
  }

  Result<Decl> Finish() {
    if (d_.scalar || d_.is_void || d_.is_record || d_.is_float) return d_;
    if (base_ == "char")
      d_.scalar = ScalarType{1, !saw_unsigned_};
    else if (base_ == "short")
      d_.scalar = ScalarType{2, !saw_unsigned_};
    else if (longs_ > 0)
      d_.scalar = ScalarType{8, !saw_unsigned_};
    else if (base_ == "int" || saw_unsigned_ || saw_signed_)
      d_.scalar = ScalarType{4, !saw_unsigned_};
    else
      return Fail(ErrorCode::kParse, "column {}: no type", d_.column);
    return d_;
  }

  const std::vector<Token>& toks_;
  size_t i_ = 0;
  Decl d_;
  bool saw_unsigned_ = false, saw_signed_ = false;
  int longs_ = 0;
  std::string base_;  // char short int
  bool after_star_ = false;
};

Result<Decl> ParseDecl(const std::vector<Token>& toks, size_t column) {
  return DeclParser(toks, column).Parse();
}

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

Status FinishSignature(Signature& sig) {
  if (sig.params.size() > 6) {
    return Fail(ErrorCode::kUnsupported,
                "{}: {} parameters; only the 6 register arguments are supported", sig.name,
                sig.params.size());
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
Status ParseReturn(const std::vector<Token>& head_tokens, Signature& sig) {
  auto head = ParseDecl(head_tokens, 1);
  if (!head) return std::unexpected(head.error());
  if (head->name.empty()) return Fail(ErrorCode::kParse, "the function has no name");
  sig.name = head->name;
  if (head->is_float && head->pointer_depth == 0) {
    return Fail(ErrorCode::kUnsupported, "floating-point return values are not supported");
  }
  if (head->is_record && head->pointer_depth == 0) {
    return Fail(ErrorCode::kUnsupported, "struct return values are not supported");
  }
  if (head->pointer_depth > 0) {
    sig.ret_width = 8;
    sig.ret_pointer = true;
  } else if (!head->is_void) {
    sig.ret_width = head->scalar->width;
    sig.ret_signed = head->scalar->is_signed;
  }
  return {};
}

// The tokens of each parameter, split at top-level commas; none for `()` and `(void)`.
std::vector<std::vector<Token>> SplitParameters(const std::vector<Token>& t,
                                                const ParameterList& list) {
  std::vector<std::vector<Token>> groups(1);
  for (size_t i = list.open + 1; i < list.close; ++i) {
    if (t[i].text == ",")
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
                "cstring, buffer, nonnull, in, out, inout)",
                p.name, a);
  }
  return {};
}

// Parameter number `index` (0-based) from its tokens.
Result<Param> ParseParam(const std::vector<Token>& tokens, size_t index,
                         LengthAnnotations& lengths) {
  if (tokens.empty()) return Fail(ErrorCode::kParse, "parameter {} is empty", index + 1);
  if (tokens[0].kind == Token::kEllipsis) {
    return Fail(ErrorCode::kUnsupported, "variadic functions are not supported");
  }
  auto d = ParseDecl(tokens, tokens[0].column);
  if (!d) return std::unexpected(d.error().AddContext(fmt::format("parameter {}", index + 1)));
  Param p;
  p.name = d->name.empty() ? fmt::format("arg{}", index + 1) : d->name;
  p.type_text = d->type_text;
  bool pointer = d->pointer_depth > 0 || d->array_len > 0;
  if (!pointer && (d->is_float || d->is_record || d->is_void)) {
    return Fail(ErrorCode::kUnsupported,
                "parameter '{}' ({}): only integer and pointer parameters are supported", p.name,
                p.type_text);
  }
  if (pointer) {
    SetPointerType(*d, p);
  } else {
    p.width = d->scalar->width;
    p.is_signed = d->scalar->is_signed;
  }
  for (const std::string& a : d->annotations) {
    if (auto s = ApplyAnnotation(a, pointer, p, lengths); !s) return std::unexpected(s.error());
  }
  return p;
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

Result<Signature> ParsePrototype(std::string_view prototype) {
  auto toks = Tokenize(prototype);
  if (!toks) return std::unexpected(toks.error());
  const std::vector<Token>& t = *toks;
  auto list = FindParameterList(t);
  if (!list) return std::unexpected(list.error());
  Signature sig;
  if (auto s = ParseReturn(std::vector<Token>(t.begin(), t.begin() + list->open), sig); !s)
    return std::unexpected(s.error());
  LengthAnnotations lengths;
  std::vector<std::vector<Token>> groups = SplitParameters(t, *list);
  for (size_t g = 0; g < groups.size(); ++g) {
    auto p = ParseParam(groups[g], g, lengths);
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

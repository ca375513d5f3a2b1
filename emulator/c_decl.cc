#include "emulator/internal/c_decl.h"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace patchlab::emulator::internal {

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
    } else if (std::string_view("*,()[];{}").find(c) != std::string_view::npos) {
      out.push_back({Token::kPunct, std::string(1, c), i + 1});
      ++i;
    } else {
      return Fail(ErrorCode::kParse, "column {}: unexpected character '{}'", i + 1, c);
    }
  }
  return out;
}

namespace {

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
      } else if (t.kind == Token::kPunct && t.text == "(") {
        s = FunctionPointer(t);
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
  // `(*name)(PARAMS)` after the return type of a function pointer.
  Status FunctionPointer(const Token& t) {
    size_t i = i_ + 1;
    if (i >= toks_.size() || toks_[i].text != "*") {
      return Fail(ErrorCode::kParse, "column {}: expected '(*name)(...)' for a function pointer",
                  t.column);
    }
    ++i;
    if (i < toks_.size() && toks_[i].kind == Token::kWord) d_.name = toks_[i++].text;
    if (i + 1 >= toks_.size() || toks_[i].text != ")" || toks_[i + 1].text != "(") {
      return Fail(ErrorCode::kParse, "column {}: expected '(*name)(...)' for a function pointer",
                  t.column);
    }
    int depth = 0;
    size_t close = toks_.size();
    for (size_t j = i + 1; j < toks_.size(); ++j) {
      if (toks_[j].text == "(") ++depth;
      if (toks_[j].text == ")" && --depth == 0) {
        close = j;
        break;
      }
    }
    if (close == toks_.size())
      return Fail(ErrorCode::kParse, "column {}: no matching ')'", t.column);
    d_.function_pointer = true;
    d_.function_params.assign(toks_.begin() + static_cast<long>(i + 2),
                              toks_.begin() + static_cast<long>(close));
    d_.type_text += "(*)(...)";
    // Only annotation comments may follow.
    for (size_t j = close + 1; j < toks_.size(); ++j) {
      if (toks_[j].kind != Token::kComment) {
        return Fail(ErrorCode::kParse, "column {}: unexpected '{}' after a function pointer",
                    toks_[j].column, toks_[j].text);
      }
    }
    i_ = close;
    return {};
  }

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
    } else if (w == "float" || w == "double" || w == "_Float128" || w == "__float128") {
      d_.is_float = true;
      d_.float_format = w == "float"    ? FloatFormat::kSingle
                        : w == "double" ? FloatFormat::kDouble
                                        : FloatFormat::kQuad;
    } else if (w == "__int128") {
      d_.int128 = true;
      base_ = w;
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
    if (t.text == "enum") {
      d_.scalar = ScalarType{4, true};
    } else {
      d_.is_record = true;
      d_.is_union = t.text == "union";
      d_.tag = toks_[i_ + 1].text;
    }
    d_.type_text += " " + toks_[i_ + 1].text;
    ++i_;
    return {};
  }

  Result<Decl> Finish() {
    if (d_.is_float && d_.float_format == FloatFormat::kDouble && longs_ > 0)
      d_.float_format = FloatFormat::kX87;
    if (d_.scalar || d_.is_void || d_.is_record || d_.is_float) return d_;
    if (d_.int128) {
      d_.scalar = ScalarType{16, !saw_unsigned_};
      return d_;
    }
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

}  // namespace

Result<Decl> ParseDecl(const std::vector<Token>& toks, size_t column) {
  return DeclParser(toks, column).Parse();
}

}  // namespace patchlab::emulator::internal

namespace patchlab::emulator::internal {
namespace {

constexpr size_t kMaxRecordLeaves = 4096;

// One element of a declared value (its array suffix aside).
Status LayOutElement(const Decl& d, const RecordTable& records, RecordType& out) {
  if (d.pointer_depth > 0 || d.function_pointer) {
    out.size = out.align = 8;
    out.leaves = {Leaf{0, 8, ValueKind::kPointer, FloatFormat::kNone, false}};
    return {};
  }
  if (d.is_float) {
    out.size = static_cast<uint64_t>(FloatBytes(d.float_format));
    out.align = out.size;
    out.leaves = {Leaf{0, static_cast<int>(out.size), ValueKind::kFloat, d.float_format, false}};
    return {};
  }
  if (d.is_record) {
    auto it = records.find(d.tag);
    if (it == records.end()) {
      return Fail(ErrorCode::kParse,
                  "column {}: {} {} is not defined: define it before the prototype, e.g. "
                  "\"{} {} {{ int a; double b; }}; ...\"",
                  d.column, d.is_union ? "union" : "struct", d.tag, d.is_union ? "union" : "struct",
                  d.tag);
    }
    out = it->second;
    return {};
  }
  if (d.scalar) {
    out.size = out.align = static_cast<uint64_t>(d.scalar->width);
    for (uint64_t at = 0; at < out.size; at += 8) {
      out.leaves.push_back(Leaf{at, static_cast<int>(std::min<uint64_t>(8, out.size - at)),
                                ValueKind::kInteger, FloatFormat::kNone, d.scalar->is_signed});
    }
    return {};
  }
  return Fail(ErrorCode::kParse, "column {}: '{}' has no size", d.column, d.type_text);
}

uint64_t RoundUp(uint64_t v, uint64_t align) { return (v + align - 1) / align * align; }

// The tokens of each member declaration in a record's braces, with
// `T a, *b, c[2]` split into one declaration each (the base type repeated).
std::vector<std::vector<Token>> MemberDeclarations(const std::vector<Token>& body) {
  std::vector<std::vector<Token>> out;
  std::vector<Token> statement;
  auto flush = [&] {
    if (statement.empty()) return;
    // The base type: the tokens before the first '*', or before the last word.
    size_t base_end = statement.size();
    for (size_t i = 0; i < statement.size(); ++i) {
      if (statement[i].text == "*" || statement[i].text == "," || statement[i].text == "[") {
        base_end = i;
        break;
      }
    }
    if (base_end == statement.size() || statement[base_end].text != "*") {
      while (base_end > 0 && statement[base_end - 1].kind != Token::kWord) --base_end;
      if (base_end > 0) --base_end;  // the first declarator's name
    }
    const std::vector<Token> base(statement.begin(),
                                  statement.begin() + static_cast<long>(base_end));
    std::vector<Token> current = base;
    for (size_t i = base_end; i < statement.size(); ++i) {
      if (statement[i].text == ",") {
        out.push_back(current);
        current = base;
      } else {
        current.push_back(statement[i]);
      }
    }
    out.push_back(current);
    statement.clear();
  };
  for (const Token& t : body) {
    if (t.text == ";")
      flush();
    else
      statement.push_back(t);
  }
  flush();
  return out;
}

}  // namespace

Status LayOut(const Decl& d, const RecordTable& records, RecordType& out) {
  RecordType element;
  if (auto s = LayOutElement(d, records, element); !s) return s;
  out = RecordType{};
  out.align = std::max<uint64_t>(element.align, 1);
  const uint64_t count = std::max<uint64_t>(d.array_len, 1);
  if (element.leaves.size() * count > kMaxRecordLeaves) {
    return Fail(ErrorCode::kUnsupported, "column {}: more than {} scalar members", d.column,
                kMaxRecordLeaves);
  }
  for (uint64_t i = 0; i < count; ++i) {
    for (Leaf l : element.leaves) {
      l.offset += i * element.size;
      out.leaves.push_back(l);
    }
  }
  out.size = element.size * count;
  return {};
}

Status ParseRecordDefinition(const std::vector<Token>& toks, RecordTable& records) {
  if (toks.size() < 4 || toks[1].kind != Token::kWord || toks[2].text != "{" ||
      toks.back().text != "}") {
    return Fail(ErrorCode::kParse, "column {}: expected '{} NAME {{ MEMBERS }};'", toks[0].column,
                toks[0].text);
  }
  const bool is_union = toks[0].text == "union";
  const std::string& tag = toks[1].text;
  if (records.contains(tag)) {
    return Fail(ErrorCode::kParse, "column {}: {} is defined twice", toks[1].column, tag);
  }
  RecordType r;
  r.name = toks[0].text + " " + tag;
  uint64_t offset = 0;
  for (const std::vector<Token>& member :
       MemberDeclarations(std::vector<Token>(toks.begin() + 3, toks.end() - 1))) {
    auto d = ParseDecl(member, member.front().column);
    if (!d) return std::unexpected(std::move(d.error()).AddContext(r.name));
    RecordType m;
    if (auto s = LayOut(*d, records, m); !s)
      return std::unexpected(std::move(s.error()).AddContext(r.name));
    const uint64_t at = is_union ? 0 : RoundUp(offset, m.align);
    for (Leaf l : m.leaves) {
      l.offset += at;
      r.leaves.push_back(l);
    }
    offset = is_union ? std::max(offset, m.size) : at + m.size;
    r.align = std::max(r.align, m.align);
  }
  r.size = RoundUp(offset, r.align);
  std::stable_sort(r.leaves.begin(), r.leaves.end(),
                   [](const Leaf& a, const Leaf& b) { return a.offset < b.offset; });
  records.emplace(tag, std::move(r));
  return {};
}

}  // namespace patchlab::emulator::internal

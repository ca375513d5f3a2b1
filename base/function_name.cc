#include "base/function_name.h"

#include <cxxabi.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <map>
#include <memory>

namespace patchlab {
namespace {

bool IsWordChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '$' || c == '.';
}

// A name split into words (identifiers with their `::` qualifiers, numbers)
// and single punctuation characters; spaces only separate.
std::vector<std::string> Tokens(std::string_view s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    if (std::isspace(static_cast<unsigned char>(s[i]))) {
      ++i;
    } else if (IsWordChar(s[i]) || (s[i] == ':' && i + 1 < s.size() && s[i + 1] == ':')) {
      size_t j = i;
      while (j < s.size() &&
             (IsWordChar(s[j]) || (s[j] == ':' && j + 1 < s.size() && s[j + 1] == ':'))) {
        j += s[j] == ':' ? 2 : 1;
      }
      out.emplace_back(s.substr(i, j - i));
      i = j;
    } else {
      out.emplace_back(1, s[i]);
      ++i;
    }
  }
  return out;
}

bool IsWord(const std::string& t) { return !t.empty() && (IsWordChar(t[0]) || t[0] == ':'); }

std::string Join(const std::vector<std::string>& tokens) {
  std::string out;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (i > 0 && IsWord(tokens[i - 1]) && IsWord(tokens[i])) out += ' ';
    out += tokens[i];
  }
  return out;
}

// The index just past the '>' that closes the '<' at `open`.
size_t CloseAngle(const std::vector<std::string>& t, size_t open) {
  int depth = 0;
  for (size_t i = open; i < t.size(); ++i) {
    if (t[i] == "<") ++depth;
    if (t[i] == ">" && --depth == 0) return i + 1;
  }
  return t.size();
}

// Drops template arguments that are the defaults everyone leaves out:
// `, std::allocator<...>` and `, std::char_traits<...>`.
void DropDefaultTemplateArguments(std::vector<std::string>& t) {
  for (size_t i = 0; i + 2 < t.size();) {
    if (t[i] == "," && (t[i + 1] == "std::allocator" || t[i + 1] == "std::char_traits") &&
        t[i + 2] == "<") {
      t.erase(t.begin() + static_cast<long>(i),
              t.begin() + static_cast<long>(CloseAngle(t, i + 2)));
    } else {
      ++i;
    }
  }
}

// `std::basic_string<char>` -> `std::string`.
void NameStringTypes(std::vector<std::string>& t) {
  for (size_t i = 0; i + 3 < t.size(); ++i) {
    if (t[i] == "std::basic_string" && t[i + 1] == "<" && t[i + 2] == "char" && t[i + 3] == ">") {
      t[i] = "std::string";
      t.erase(t.begin() + static_cast<long>(i) + 1, t.begin() + static_cast<long>(i) + 4);
    }
  }
}

// Within one parameter: `const T*` -> `T const*`; a `const` on the
// parameter itself (`const int`) is not part of a signature and goes.
std::vector<std::string> EastConst(std::vector<std::string> p) {
  if (p.empty() || p[0] != "const") return p;
  p.erase(p.begin());
  int depth = 0;
  size_t i = 0;
  for (; i < p.size(); ++i) {
    if (p[i] == "<" || p[i] == "(") ++depth;
    if (p[i] == ">" || p[i] == ")") --depth;
    if (depth == 0 && (p[i] == "*" || p[i] == "&")) break;
  }
  if (i < p.size()) p.insert(p.begin() + static_cast<long>(i), "const");
  return p;
}

// The position of the '(' that opens the parameter list: the one matching
// the last ')' before trailing qualifiers (const, &, &&, volatile).
size_t ParameterListOpen(const std::vector<std::string>& t) {
  size_t end = t.size();
  while (end > 0 && (t[end - 1] == "const" || t[end - 1] == "volatile" || t[end - 1] == "&")) --end;
  if (end == 0 || t[end - 1] != ")") return t.size();
  int depth = 0;
  for (size_t i = end; i-- > 0;) {
    if (t[i] == ")") ++depth;
    if (t[i] == "(" && --depth == 0) {
      // `operator()` is a name, not a parameter list.
      if (i > 0 && t[i - 1].ends_with("operator") && i + 2 == end) return t.size();
      return i;
    }
  }
  return t.size();
}

// Rewrites each parameter of the list opening at `open` with EastConst.
std::vector<std::string> NormalizeParameters(const std::vector<std::string>& t, size_t open) {
  std::vector<std::string> out(t.begin(), t.begin() + static_cast<long>(open) + 1);
  std::vector<std::string> param;
  int depth = 0;
  size_t i = open + 1;
  for (; i < t.size(); ++i) {
    const std::string& tok = t[i];
    if (depth == 0 && (tok == "," || tok == ")")) {
      for (std::string& p : EastConst(param)) out.push_back(std::move(p));
      param.clear();
      out.push_back(tok);
      if (tok == ")") break;
      continue;
    }
    if (tok == "<" || tok == "(") ++depth;
    if (tok == ">" || tok == ")") --depth;
    param.push_back(tok);
  }
  out.insert(out.end(), t.begin() + static_cast<long>(std::min(i + 1, t.size())), t.end());
  return out;
}

// The qualified name without return type, parameters or qualifiers:
// "int ns::Get<int>(int const*) const" -> "ns::Get<int>".
std::string QualifiedName(const std::string& normalized) {
  std::vector<std::string> t = Tokens(normalized);
  const size_t open = ParameterListOpen(t);
  t.resize(std::min(open, t.size()));
  // A template's demangled name starts with its return type: the name is
  // the last word (with its template arguments) at depth 0.
  size_t start = 0;
  int depth = 0;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == "<") ++depth;
    if (t[i] == ">") --depth;
    if (depth == 0 && i > 0 && IsWord(t[i]) &&
        (IsWord(t[i - 1]) || t[i - 1] == "*" || t[i - 1] == "&" || t[i - 1] == ">")) {
      start = i;
    }
  }
  return Join(std::vector<std::string>(t.begin() + static_cast<long>(start), t.end()));
}

bool EndsWithAtScope(const std::string& full, const std::string& suffix) {
  if (full == suffix) return true;
  return full.size() > suffix.size() + 2 && full.ends_with(suffix) &&
         full.compare(full.size() - suffix.size() - 2, 2, "::") == 0;
}

bool IsFunctionSymbol(const ElfSymbol& s) {
  return s.defined && (s.type == SymbolType::kFunc || s.type == SymbolType::kIfunc ||
                       (s.type == SymbolType::kNone && s.size > 0));
}

Result<FunctionMatch> ByAddress(const ElfFile& elf, std::string_view name) {
  char* end = nullptr;
  const std::string text(name);
  const uint64_t addr = std::strtoull(text.c_str(), &end, 16);
  if (end == text.c_str() + 2 || *end != '\0') {
    return Fail(ErrorCode::kInvalidArgument, "{}: '{}' is not an address", elf.path().string(),
                name);
  }
  FunctionMatch m;
  m.address = addr;
  m.symbol = elf.SymbolAt(addr);
  if (m.symbol != nullptr && m.symbol->value != addr) m.symbol = nullptr;  // mid-function
  m.demangled = m.symbol != nullptr ? Demangle(m.symbol->name) : std::string(name);
  return m;
}

// Every function whose demangled name matches `name`, one per address.
std::map<uint64_t, const ElfSymbol*> CxxCandidates(const ElfFile& elf, std::string_view name,
                                                   bool* exact) {
  const std::string wanted = NormalizeCxxName(name);
  const bool with_parameters = QualifiedName(wanted) != wanted;
  std::map<uint64_t, const ElfSymbol*> full, suffix;
  for (const ElfSymbol& s : elf.symbols()) {
    if (!IsFunctionSymbol(s) || !s.name.starts_with("_Z")) continue;
    const std::string demangled = NormalizeCxxName(Demangle(s.name));
    const std::string candidate = with_parameters ? demangled : QualifiedName(demangled);
    if (candidate == wanted) {
      full.emplace(s.value, &s);
    } else if (EndsWithAtScope(candidate, wanted)) {
      suffix.emplace(s.value, &s);
    }
  }
  *exact = !full.empty();
  return full.empty() ? suffix : full;
}

}  // namespace

std::string Demangle(std::string_view symbol) {
  if (!symbol.starts_with("_Z")) return std::string(symbol);
  const std::string s(symbol);
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> out(
      abi::__cxa_demangle(s.c_str(), nullptr, nullptr, &status), &std::free);
  return status == 0 && out ? std::string(out.get()) : s;
}

std::string NormalizeCxxName(std::string_view name) {
  std::vector<std::string> t = Tokens(name);
  for (std::string& tok : t) {
    if (tok.starts_with("std::__cxx11::")) tok = "std::" + tok.substr(14);
  }
  DropDefaultTemplateArguments(t);
  NameStringTypes(t);
  const size_t open = ParameterListOpen(t);
  if (open < t.size()) t = NormalizeParameters(t, open);
  return Join(t);
}

Result<FunctionMatch> FindFunctionByName(const ElfFile& elf, std::string_view name) {
  const std::string file = elf.path().string();
  if (name.starts_with("0x")) return ByAddress(elf, name);
  if (const ElfSymbol* s = elf.FindSymbol(name); s != nullptr && s->defined) {
    if (!IsFunctionSymbol(*s)) {
      return Fail(ErrorCode::kInvalidArgument, "{}: '{}' is not a function", file, name);
    }
    return FunctionMatch{s, s->value, Demangle(s->name)};
  }
  bool exact = false;
  std::map<uint64_t, const ElfSymbol*> found = CxxCandidates(elf, name, &exact);
  if (found.empty()) return Fail(ErrorCode::kNotFound, "{}: no defined symbol '{}'", file, name);
  if (found.size() > 1) {
    std::string list;
    for (const auto& [addr, s] : found)
      list += fmt::format("\n  {} ({}, at {:#x})", Demangle(s->name), s->name, addr);
    return Fail(ErrorCode::kInvalidArgument,
                "{}: '{}' names {} functions{}; give the parameter list, e.g. '{}'", file, name,
                found.size(), list, Demangle(found.begin()->second->name));
  }
  const ElfSymbol* s = found.begin()->second;
  return FunctionMatch{s, s->value, Demangle(s->name)};
}

}  // namespace patchlab

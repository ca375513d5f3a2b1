// Finding a function in an ELF file by the name a person writes, not only by
// its symbol:
//   parse                      a symbol (the default version when several)
//   memcpy@GLIBC_2.2.5         that version of a dynamic symbol
//   Pricer::Quote              a C++ function by its demangled name, when
//                              exactly one function has it
//   Pricer::Quote(std::string const&) const
//                              one overload, by its parameter list
//   0x1139                     an address (a stripped file)
// Demangled names are compared after normalising spelling that does not
// change meaning: spaces, `const T&` against `T const&`, and std::string
// against std::__cxx11::basic_string<char, std::char_traits<char>,
// std::allocator<char> >. An overload set named without a parameter list is
// refused with every candidate listed, so that the caller can pick one.
//
// Thread-safety: pure functions of their arguments.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/elf_file.h"
#include "base/error.h"

namespace patchlab {

struct FunctionMatch {
  // The symbol found; nullptr for an address no sized symbol covers (a
  // stripped file).
  const ElfSymbol* symbol = nullptr;
  uint64_t address = 0;   // link-time address
  std::string demangled;  // the symbol's demangled name; its name for C symbols
};

// The function `name` (see above) names in `elf`. Fails with kNotFound (naming
// the file and the name) when nothing matches, kInvalidArgument when a C++
// name matches several functions (listing them) or names something that is
// not a function.
Result<FunctionMatch> FindFunctionByName(const ElfFile& elf, std::string_view name);

// The demangled form of an Itanium C++ ABI symbol; `symbol` itself when it is
// not one (a C name).
std::string Demangle(std::string_view symbol);

// A demangled name or signature in the one spelling FindFunctionByName
// compares: no spaces but between words, `const` after the type it
// qualifies, std::string for the full basic_string<char, ...>.
std::string NormalizeCxxName(std::string_view name);

}  // namespace patchlab

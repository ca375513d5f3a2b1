// FindFunctionByName on a real C++ shared object (elf_fixtures/cxx_names.cc)
// and on the versioned fixture: C++ names with and without parameter lists,
// the overload refusal, versions, addresses.
#include "base/function_name.h"

#include <gtest/gtest.h>

#include "tests/support/status_matchers.h"

namespace patchlab {
namespace {

using ::patchlab::testing::HasSubstr;

ElfFile Open(const char* path) {
  auto f = ElfFile::Open(path);
  if (!f) {
    ADD_FAILURE() << f.error().ToString();
    std::abort();
  }
  return std::move(*f);
}

TEST(FunctionName, NormalizesSpellingThatDoesNotChangeMeaning) {
  EXPECT_EQ(NormalizeCxxName("Pricer::Quote(const std::string &) const"),
            "Pricer::Quote(std::string const&)const");
  EXPECT_EQ(NormalizeCxxName("Pricer::Quote(std::__cxx11::basic_string<char, "
                             "std::char_traits<char>, std::allocator<char> > const&) const"),
            "Pricer::Quote(std::string const&)const");
  EXPECT_EQ(NormalizeCxxName("f(std::vector<int, std::allocator<int> > const&, const char *)"),
            "f(std::vector<int>const&,char const*)");
  EXPECT_EQ(NormalizeCxxName("f(const int, unsigned   long)"), "f(int,unsigned long)");
}

TEST(FunctionName, OverloadSetIsRefusedListingEveryCandidate) {
  ElfFile elf = Open(ELF_FIXTURE_CXX_NAMES);
  auto r = FindFunctionByName(elf, "Pricer::Quote");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(r.error().ToString(), HasSubstr("names 2 functions"));
  EXPECT_THAT(r.error().ToString(), HasSubstr("shop::Pricer::Quote(int) const"));
  EXPECT_THAT(r.error().ToString(), HasSubstr("shop::Pricer::Quote(std::__cxx11::basic_string"));
}

TEST(FunctionName, OverloadIsChosenByItsParameterList) {
  ElfFile elf = Open(ELF_FIXTURE_CXX_NAMES);
  auto by_string = FindFunctionByName(elf, "Pricer::Quote(std::string const&) const");
  ASSERT_OK(by_string);
  EXPECT_EQ(by_string->symbol->name,
            "_ZNK4shop6Pricer5QuoteERKNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE");
  // The other spelling of the same parameter list finds the same function.
  auto west = FindFunctionByName(elf, "shop::Pricer::Quote(const std::string&) const");
  ASSERT_OK(west);
  EXPECT_EQ(west->address, by_string->address);
  auto by_int = FindFunctionByName(elf, "Pricer::Quote(int) const");
  ASSERT_OK(by_int);
  EXPECT_EQ(by_int->symbol->name, "_ZNK4shop6Pricer5QuoteEi");
  EXPECT_NE(by_int->address, by_string->address);
  // Without `const` the member is another function, which does not exist.
  EXPECT_FALSE(FindFunctionByName(elf, "Pricer::Quote(int)").has_value());
}

TEST(FunctionName, UniqueNamesOperatorsAndTemplates) {
  ElfFile elf = Open(ELF_FIXTURE_CXX_NAMES);
  auto mid = FindFunctionByName(elf, "shop::Pricer::Mid");
  ASSERT_OK(mid);
  EXPECT_EQ(mid->demangled,
            "shop::Pricer::Mid(std::vector<int, std::allocator<int> > const&, char**)");
  auto call = FindFunctionByName(elf, "Pricer::operator()");
  ASSERT_OK(call);
  EXPECT_EQ(call->symbol->name, "_ZN4shop6PricerclEi");
  auto pick = FindFunctionByName(elf, "shop::Pick<long>");
  ASSERT_OK(pick);
  EXPECT_EQ(pick->demangled, "long shop::Pick<long>(long const*, unsigned long)");
  auto c = FindFunctionByName(elf, "plain_c_function");
  ASSERT_OK(c);
  EXPECT_EQ(c->demangled, "plain_c_function");
}

TEST(FunctionName, MissingNameAndAddresses) {
  ElfFile elf = Open(ELF_FIXTURE_CXX_NAMES);
  auto none = FindFunctionByName(elf, "Pricer::Sell");
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error().code(), ErrorCode::kNotFound);
  EXPECT_THAT(none.error().ToString(), HasSubstr("Pricer::Sell"));
  auto c = FindFunctionByName(elf, "plain_c_function");
  ASSERT_OK(c);
  auto at = FindFunctionByName(elf, fmt::format("{:#x}", c->address));
  ASSERT_OK(at);
  EXPECT_EQ(at->symbol, c->symbol);
  EXPECT_FALSE(FindFunctionByName(elf, "0xzz").has_value());
}

TEST(FunctionName, VersionedNames) {
  ElfFile elf = Open(ELF_FIXTURE_VERSIONED);
  auto def = FindFunctionByName(elf, "vfunc");
  auto old = FindFunctionByName(elf, "vfunc@VER_1");
  ASSERT_OK(def);
  ASSERT_OK(old);
  EXPECT_NE(def->address, old->address);
  EXPECT_EQ(def->address, elf.FindSymbol("vfunc_v2")->value);
  EXPECT_EQ(old->address, elf.FindSymbol("vfunc_v1")->value);
}

}  // namespace
}  // namespace patchlab

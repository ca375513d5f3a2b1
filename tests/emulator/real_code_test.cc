// The checker on code written the way real libraries and programs are:
// aliases whose DWARF names differ, assembly functions, C++ members named
// by their C++ names (tests/emulator/fixtures/names.c, pricer.cc).
#include <gtest/gtest.h>

#include "emulator/checker.h"
#include "tests/support/status_matchers.h"

namespace patchlab::emulator {
namespace {

using ::patchlab::testing::HasSubstr;

CheckOptions SelfCheck(const char* elf, std::string symbol, std::string sig = "") {
  CheckOptions o;
  o.old_fn = {elf, symbol};
  o.new_fn = {elf, std::move(symbol)};
  o.signature = std::move(sig);
  o.inputs = 300;
  o.seed = 3;
  return o;
}

TEST(RealCode, AliasFindsItsDwarfByAddress) {
  // `count_digits` is an alias: DWARF knows the function as count_digits_impl.
  auto r = RunCheck(SelfCheck(FIXTURE_NAMES, "count_digits"));
  ASSERT_OK(r);
  EXPECT_EQ(r->verdict, Verdict::kEquivalent) << FormatText(*r);
  EXPECT_EQ(r->signature_source, "DWARF");
  EXPECT_THAT(r->signature, HasSubstr("count_digits(const char *s, size_t len)"));
  EXPECT_THAT(r->signature, HasSubstr("DWARF: count_digits_impl"));
  EXPECT_GT(r->returned_inputs, 0u);
}

TEST(RealCode, AssemblyFunctionIsRefusedAskingForSig) {
  auto r = RunCheck(SelfCheck(FIXTURE_NAMES, "asm_add"));
  ASSERT_FALSE(r.has_value());
  EXPECT_THAT(r.error().ToString(), HasSubstr("no DWARF subprogram"));
  EXPECT_THAT(r.error().ToString(), HasSubstr("--sig"));
  // With the prototype given, it runs.
  auto given = RunCheck(SelfCheck(FIXTURE_NAMES, "asm_add", "long asm_add(long a, long b)"));
  ASSERT_OK(given);
  EXPECT_EQ(given->verdict, Verdict::kEquivalent) << FormatText(*given);
}

TEST(RealCode, CxxMemberByItsCxxName) {
  auto r = RunCheck(SelfCheck(FIXTURE_PRICER, "Pricer::Quote(int) const"));
  ASSERT_OK(r);
  EXPECT_EQ(r->verdict, Verdict::kEquivalent) << FormatText(*r);
  // `this` comes first, a pointer to the 8-byte object.
  EXPECT_THAT(r->signature, HasSubstr("this"));
  EXPECT_GT(r->returned_inputs, 0u);
  // A refactor of the same member, checked against it.
  CheckOptions o = SelfCheck(FIXTURE_PRICER, "Pricer::Quote(int) const");
  o.new_fn.symbol = "Pricer::Discounted";
  o.signature = "int quote(const struct Pricer *self /* 8 bytes, nonnull */, int units)";
  auto refactor = RunCheck(o);
  ASSERT_OK(refactor);
  // Discounted takes a third argument (percent), left 0 by the caller's registers.
  EXPECT_EQ(refactor->verdict, Verdict::kEquivalent) << FormatText(*refactor);
}

TEST(RealCode, CxxOverloadSetIsRefusedListingTheOverloads) {
  auto r = RunCheck(SelfCheck(FIXTURE_PRICER, "Pricer::Quote"));
  ASSERT_FALSE(r.has_value());
  EXPECT_THAT(r.error().ToString(), HasSubstr("names 2 functions"));
  EXPECT_THAT(r.error().ToString(), HasSubstr("Pricer::Quote(int) const"));
}

CheckOptions Builds(const char* old_elf, const char* new_elf) {
  CheckOptions o;
  o.old_fn = {old_elf, "parse"};
  o.new_fn = {new_elf, "parse"};
  o.inputs = 400;
  o.seed = 9;
  return o;
}

TEST(RealCode, TwoNonPieBuildsRunInTheirOwnAddressSpaces) {
  auto r = RunCheck(Builds(FIXTURE_APP_V1, FIXTURE_APP_V2));
  ASSERT_OK(r);
  EXPECT_EQ(r->verdict, Verdict::kEquivalent) << FormatText(*r);
  EXPECT_GT(r->returned_inputs, 0u);
  ASSERT_FALSE(r->notes.empty());
  EXPECT_THAT(r->notes[0], HasSubstr("its own address space"));
}

TEST(RealCode, TwoBuildsAreComparedOnTheirGlobalsByName) {
  auto r = RunCheck(Builds(FIXTURE_APP_V1, FIXTURE_APP_V2_BUG));
  ASSERT_OK(r);
  EXPECT_EQ(r->verdict, Verdict::kDiverges) << FormatText(*r);
  ASSERT_FALSE(r->counterexamples.empty());
  EXPECT_EQ(r->counterexamples[0].kind, "memory");
  EXPECT_THAT(r->counterexamples[0].detail, HasSubstr("global 'requests'"));
}

TEST(RealCode, FunctionRefSplitsAtTheLastSingleColon) {
  auto ref = FunctionRef::Parse("build/lib:x.so:Pricer::Quote(std::string const&) const");
  ASSERT_OK(ref);
  EXPECT_EQ(ref->elf, "build/lib:x.so");
  EXPECT_EQ(ref->symbol, "Pricer::Quote(std::string const&) const");
}

}  // namespace
}  // namespace patchlab::emulator

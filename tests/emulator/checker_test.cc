// The semantic checker on real compiled pairs (tests/emulator/fixtures): pairs
// that must pass, pairs that must fail with a minimized counterexample, fixes
// declared with --expect, stubs, private references, and what it must refuse
// to judge.
#include "emulator/checker.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "emulator/layout.h"
#include "tests/support/status_matchers.h"

using ::testing::HasSubstr;
using ::testing::Not;

namespace patchlab::emulator {
namespace {

CheckOptions Options(std::string old_elf, std::string old_sym, std::string new_elf,
                     std::string new_sym, std::string sig = "") {
  CheckOptions o;
  o.old_fn = {std::move(old_elf), std::move(old_sym)};
  o.new_fn = {std::move(new_elf), std::move(new_sym)};
  o.signature = std::move(sig);
  o.inputs = 600;
  o.seed = 7;
  return o;
}

CheckResult MustRun(const CheckOptions& o) {
  auto r = RunCheck(o);
  EXPECT_OK(r);
  if (!r) return CheckResult{};
  return *r;
}

const Counterexample* FindKind(const CheckResult& r, std::string_view kind) {
  for (const Counterexample& c : r.counterexamples) {
    if (c.kind == kind) return &c;
  }
  return nullptr;
}

std::string Explain(const CheckResult& r) { return FormatText(r); }

TEST(Checker, LoopAndUnrolledTwinAreEquivalent) {
  CheckResult r = MustRun(Options(FIXTURE_TARGET, "sum_loop", FIXTURE_TARGET, "sum_unrolled",
                                  "uint32_t f(const unsigned char *buf, size_t len)"));
  EXPECT_EQ(r.verdict, Verdict::kEquivalent) << Explain(r);
  EXPECT_EQ(r.inputs_run, 600u);
  EXPECT_GT(r.insns_old, 0u);
  EXPECT_NE(r.insns_old, r.insns_new) << "unrolling changes the instruction count";
}

TEST(Checker, SameSourceAtO0AndO2IsEquivalentWithStructOutput) {
  // The signature comes from DWARF: struct parse_result is 16 bytes there.
  CheckResult r =
      MustRun(Options(FIXTURE_TARGET, "parse_number", FIXTURE_TARGET_O0, "parse_number"));
  EXPECT_EQ(r.verdict, Verdict::kEquivalent) << Explain(r);
  EXPECT_EQ(r.signature_source, "DWARF");
  EXPECT_THAT(r.signature, HasSubstr("struct parse_result")) << r.signature;
  EXPECT_GT(r.insns_new, r.insns_old) << "-O0 executes more instructions";
}

TEST(Checker, RefactorIntoAHelperIsEquivalent) {
  CheckResult r = MustRun(Options(FIXTURE_TARGET, "fnv_inline", FIXTURE_TARGET, "fnv_helper"));
  EXPECT_EQ(r.verdict, Verdict::kEquivalent) << Explain(r);
}

TEST(Checker, OffByOneInABoundsCheckIsANewCrashMinimized) {
  CheckResult r =
      MustRun(Options(FIXTURE_TARGET, "table_get", FIXTURE_TARGET, "table_get_off_by_one",
                      "int table_get(const int *table /* 64 bytes */, int i)"));
  EXPECT_EQ(r.verdict, Verdict::kNewCrash) << Explain(r);
  const Counterexample* c = FindKind(r, "new-crash");
  ASSERT_NE(c, nullptr) << Explain(r);
  // Minimized: the first index past the table, the table against its trailing guard.
  EXPECT_EQ(c->input.args[1].value, 16u) << c->input_text;
  EXPECT_FALSE(c->input.leading);
  EXPECT_THAT(c->new_result, HasSubstr("read-unmapped")) << c->new_result;
  // The exact re-run names the faulting instruction, not the block start.
  EXPECT_THAT(c->new_result, Not(HasSubstr("block start"))) << c->new_result;
  EXPECT_THAT(c->old_result, HasSubstr("-1")) << c->old_result;
}

TEST(Checker, UnderReadFaultsAgainstTheLeadingGuard) {
  CheckResult r = MustRun(Options(FIXTURE_TARGET, "ends_with_newline", FIXTURE_TARGET,
                                  "ends_with_newline_unchecked",
                                  "int f(const char *buf /* nonnull */, size_t len)"));
  EXPECT_EQ(r.verdict, Verdict::kNewCrash) << Explain(r);
  const Counterexample* c = FindKind(r, "new-crash");
  ASSERT_NE(c, nullptr) << Explain(r);
  EXPECT_TRUE(c->input.leading) << "buf[-1] is mapped fill when the buffer ends at its page's end: "
                                << c->input_text;
  EXPECT_EQ(c->input.args[1].value, 0u) << c->input_text;
  // buf[-1]: the byte before the first argument's page.
  EXPECT_THAT(c->new_result, HasSubstr(fmt::format("read-unmapped at {:#x}", ArgPage(0) - 1)))
      << c->new_result;
}

TEST(Checker, NewNullDereferenceIsFound) {
  CheckResult r = MustRun(Options(FIXTURE_TARGET, "first_char", FIXTURE_TARGET,
                                  "first_char_no_null_check", "int first_char(const char *s)"));
  EXPECT_EQ(r.verdict, Verdict::kNewCrash) << Explain(r);
  const Counterexample* c = FindKind(r, "new-crash");
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(c->input.args[0].is_null) << c->input_text;
  EXPECT_THAT(c->new_result, HasSubstr("read-unmapped at 0x0")) << c->new_result;
}

TEST(Checker, NewInfiniteLoopIsANewHang) {
  CheckOptions o = Options(FIXTURE_TARGET, "wait_ready", FIXTURE_TARGET, "wait_ready_spins",
                           "int wait_ready(const unsigned *flags)");
  o.inputs = 200;
  o.max_blocks = 200000;
  CheckResult r = MustRun(o);
  EXPECT_EQ(r.verdict, Verdict::kNewHang) << Explain(r);
  const Counterexample* c = FindKind(r, "new-hang");
  ASSERT_NE(c, nullptr);
  // Minimized toward zero: flags == 0 keeps the low bit clear.
  EXPECT_EQ(c->input.args[0].bytes, std::vector<uint8_t>(4, 0)) << c->input_text;
}

TEST(Checker, ChangedReturnCodeOnOneInputClassDiverges) {
  CheckResult r = MustRun(Options(FIXTURE_TARGET, "classify", FIXTURE_TARGET, "classify_spaces",
                                  "int classify(int c)"));
  EXPECT_EQ(r.verdict, Verdict::kDiverges) << Explain(r);
  const Counterexample* c = FindKind(r, "return");
  ASSERT_NE(c, nullptr);
  // Shrinking moves toward 0 while the divergence holds: it stops at a member
  // of the class ('\t' or ' '), never at a character outside it.
  EXPECT_TRUE(c->input.args[0].value == 9u || c->input.args[0].value == 32u) << c->input_text;
  EXPECT_THAT(c->detail, HasSubstr("old returned 0, new returned 3")) << c->detail;
}

TEST(Checker, DeclaredFixPassesAsExpectedDivergence) {
  CheckOptions o = Options(FIXTURE_TARGET, "safe_div", FIXTURE_TARGET, "safe_div_fixed",
                           "int safe_div(int a, int b)");
  {
    CheckResult r = MustRun(o);
    EXPECT_EQ(r.verdict, Verdict::kDiverges) << Explain(r);
    const Counterexample* c = FindKind(r, "fixed-crash");
    ASSERT_NE(c, nullptr) << Explain(r);
    EXPECT_EQ(c->input.args[1].value, 0u);
    EXPECT_THAT(c->old_result, HasSubstr("divide-by-zero")) << c->old_result;
  }
  o.expects = {"new.ret == 0 when b == 0"};
  CheckResult r = MustRun(o);
  EXPECT_EQ(r.verdict, Verdict::kExpectedDivergence) << Explain(r);
  EXPECT_GT(r.expected_inputs, 0u);
  EXPECT_TRUE(r.counterexamples.empty());
  // An expectation that does not describe the fix does not hide it.
  o.expects = {"new.ret == 1 when b == 0"};
  EXPECT_EQ(MustRun(o).verdict, Verdict::kDiverges);
}

TEST(Checker, StubbedLibraryCallsRunAndALeakIsACallDivergence) {
  const char* sig = "size_t dup_upper(const char *s, char *out /* 32 bytes */)";
  CheckResult same =
      MustRun(Options(FIXTURE_TARGET, "dup_upper", FIXTURE_TARGET, "dup_upper", sig));
  EXPECT_EQ(same.verdict, Verdict::kEquivalent) << Explain(same);
  CheckResult r =
      MustRun(Options(FIXTURE_TARGET, "dup_upper", FIXTURE_TARGET, "dup_upper_leaks", sig));
  EXPECT_EQ(r.verdict, Verdict::kDiverges) << Explain(r);
  const Counterexample* c = FindKind(r, "calls");
  ASSERT_NE(c, nullptr) << Explain(r);
  EXPECT_THAT(c->detail, HasSubstr("free")) << c->detail;
}

TEST(Checker, PatchObjectReachesPrivateHelperAndGlobal) {
  CheckResult r = MustRun(
      Options(FIXTURE_TARGET, "accumulate", FIXTURE_PATCH, "accumulate_v2", "int f(int x)"));
  EXPECT_EQ(r.verdict, Verdict::kEquivalent) << Explain(r);
  CheckResult bad = MustRun(
      Options(FIXTURE_TARGET, "accumulate", FIXTURE_PATCH, "accumulate_forgets", "int f(int x)"));
  EXPECT_EQ(bad.verdict, Verdict::kDiverges) << Explain(bad);
  const Counterexample* c = FindKind(bad, "memory");
  ASSERT_NE(c, nullptr) << Explain(bad);
  EXPECT_THAT(c->detail, HasSubstr("target:")) << "the global lives in the target: " << c->detail;
  EXPECT_EQ(c->input.args[0].value, 1u) << "smallest x that changes total_seen: " << c->input_text;
}

TEST(Checker, KeywordsInTheCodeReachDeepDivergences) {
  // "PING " is compared as an immediate (an inlined memcmp); random bytes
  // would never start with it, the dictionary built from the code does.
  CheckResult r =
      MustRun(Options(FIXTURE_TARGET, "command_code", FIXTURE_TARGET, "command_code_changed"));
  EXPECT_EQ(r.verdict, Verdict::kDiverges) << Explain(r);
  const Counterexample* c = FindKind(r, "return");
  ASSERT_NE(c, nullptr) << Explain(r);
  EXPECT_EQ(std::string(c->input.args[0].bytes.begin(), c->input.args[0].bytes.end()), "PING !")
      << c->input_text;
}

TEST(Checker, CallsIntoANeededLibraryRunItsRealCode) {
  const char* sig = "unsigned long f(const unsigned char *buf, size_t len)";
  CheckResult same = MustRun(Options(FIXTURE_ZLIB, "crc_whole", FIXTURE_ZLIB, "crc_halves", sig));
  EXPECT_EQ(same.verdict, Verdict::kEquivalent) << Explain(same);
  EXPECT_EQ(same.inconclusive_inputs, 0u);
  CheckResult r = MustRun(Options(FIXTURE_ZLIB, "crc_whole", FIXTURE_ZLIB, "crc_short", sig));
  EXPECT_EQ(r.verdict, Verdict::kDiverges) << Explain(r);
  const Counterexample* c = FindKind(r, "return");
  ASSERT_NE(c, nullptr) << Explain(r);
  EXPECT_EQ(c->input.args[1].value, 1u)
      << "one byte is the smallest length that shows it: " << c->input_text;
}

TEST(Checker, UnsupportedInstructionIsInconclusive) {
  CheckResult r = MustRun(Options(FIXTURE_TARGET, "random_word", FIXTURE_TARGET, "random_word",
                                  "unsigned f(unsigned x)"));
  EXPECT_EQ(r.verdict, Verdict::kInconclusive) << Explain(r);
  EXPECT_THAT(r.inconclusive_reason, HasSubstr("rdrand")) << r.inconclusive_reason;
  EXPECT_EQ(VerdictExitCode(r.verdict), 3);
}

TEST(Checker, UnstubbedLibraryCallIsInconclusiveNamingIt) {
  CheckResult r = MustRun(Options(FIXTURE_TARGET, "uses_getenv", FIXTURE_TARGET, "uses_getenv",
                                  "int f(const char *name)"));
  EXPECT_EQ(r.verdict, Verdict::kInconclusive) << Explain(r);
  EXPECT_THAT(r.inconclusive_reason, HasSubstr("getenv")) << r.inconclusive_reason;
}

TEST(Checker, SameSeedSameReport) {
  CheckOptions o = Options(FIXTURE_TARGET, "table_get", FIXTURE_TARGET, "table_get_off_by_one",
                           "int table_get(const int *table /* 64 bytes */, int i)");
  EXPECT_EQ(FormatJson(MustRun(o)), FormatJson(MustRun(o)));
}

TEST(Checker, CountingEveryInputChangesOnlyTheInstructionFigures) {
  CheckOptions o = Options(FIXTURE_TARGET, "table_get", FIXTURE_TARGET, "table_get_off_by_one",
                           "int table_get(const int *table /* 64 bytes */, int i)");
  CheckResult sampled = MustRun(o);
  o.count_every = 1;
  CheckResult all = MustRun(o);
  EXPECT_EQ(sampled.insns_inputs, 19u) << "600 inputs, every 32nd counted";
  EXPECT_EQ(all.insns_inputs, 600u);
  EXPECT_GT(all.insns_old, sampled.insns_old);
  EXPECT_GT(sampled.insns_old, 0u);
  // Verdict, counts of inputs, counterexamples: all the same.
  sampled.insns_old = all.insns_old;
  sampled.insns_new = all.insns_new;
  sampled.insns_inputs = all.insns_inputs;
  EXPECT_EQ(FormatJson(sampled), FormatJson(all));
}

TEST(Checker, NoDebugInformationIsRefusedWithAClearMessage) {
  auto r = RunCheck(Options(FIXTURE_STRIPPED, "sum_loop", FIXTURE_STRIPPED, "sum_unrolled"));
  ASSERT_FALSE(r.has_value());
  EXPECT_THAT(r.error().ToString(), HasSubstr("--sig")) << r.error().ToString();
}

TEST(Checker, MissingSymbolIsNamed) {
  auto r = RunCheck(Options(FIXTURE_TARGET, "sum_loop", FIXTURE_TARGET, "no_such_function",
                            "uint32_t f(const unsigned char *buf, size_t len)"));
  ASSERT_FALSE(r.has_value());
  EXPECT_THAT(r.error().ToString(), HasSubstr("no_such_function")) << r.error().ToString();
}

TEST(Checker, ListingShowsBothFunctions) {
  CheckOptions o =
      Options(FIXTURE_TARGET, "classify", FIXTURE_TARGET, "classify_spaces", "int classify(int c)");
  o.listing = true;
  o.inputs = 10;
  CheckResult r = MustRun(o);
  EXPECT_THAT(r.listing, HasSubstr("old (")) << r.listing;
  EXPECT_THAT(r.listing, HasSubstr("ret")) << r.listing;
  EXPECT_THAT(r.listing, HasSubstr(" | "));
}

}  // namespace
}  // namespace patchlab::emulator

// The whole SysV x86-64 calling convention on real compiled functions
// (tests/emulator/fixtures/abi.c): each class of argument and return, from
// --sig and from DWARF, equivalent pairs that must pass and differing ones
// that must fail with the difference shown.
#include <gtest/gtest.h>

#include "emulator/call_plan.h"
#include "emulator/checker.h"
#include "tests/support/status_matchers.h"

namespace patchlab::emulator {
namespace {

using ::patchlab::testing::HasSubstr;

CheckOptions Check(std::string old_sym, std::string new_sym, std::string sig = "") {
  CheckOptions o;
  o.old_fn = {FIXTURE_ABI, std::move(old_sym)};
  o.new_fn = {FIXTURE_ABI, std::move(new_sym)};
  o.signature = std::move(sig);
  o.inputs = 400;
  o.seed = 11;
  return o;
}

CheckResult MustRun(const CheckOptions& o) {
  auto r = RunCheck(o);
  EXPECT_OK(r);
  return r ? *r : CheckResult{};
}

// Equivalent to itself with every input returning (nothing faults on a
// badly passed argument), with the signature from DWARF.
void ExpectSelfEquivalent(const std::string& symbol) {
  CheckResult r = MustRun(Check(symbol, symbol));
  EXPECT_EQ(r.verdict, Verdict::kEquivalent) << symbol << ": " << FormatText(r);
  EXPECT_EQ(r.signature_source, "DWARF");
  EXPECT_GT(r.returned_inputs, r.inputs_run / 2) << symbol << ": " << FormatText(r);
}

TEST(Abi, PlansFollowThePsAbi) {
  auto sig = ParseSignature(
      "struct mixed { int id; float w; double v; }; struct big { long a[5]; };"
      "struct big f(struct mixed m, double d, long double l, struct big b, int k)");
  ASSERT_OK(sig);
  auto plan = PlanCall(*sig);
  ASSERT_OK(plan);
  EXPECT_TRUE(plan->hidden_return) << "a 40-byte struct comes back through rdi";
  ASSERT_EQ(plan->params.size(), 5u);
  // mixed: INTEGER (id and w) in rsi after the hidden rdi, SSE (v) in xmm0.
  ASSERT_EQ(plan->params[0].pieces.size(), 2u);
  EXPECT_EQ(plan->params[0].pieces[0].where, Piece::kGpr);
  EXPECT_EQ(plan->params[0].pieces[0].index, 1u);
  EXPECT_EQ(plan->params[0].pieces[1].where, Piece::kXmm);
  EXPECT_EQ(plan->params[0].pieces[1].index, 0u);
  EXPECT_EQ(plan->params[1].pieces[0].where, Piece::kXmm);  // d in xmm1
  EXPECT_EQ(plan->params[1].pieces[0].index, 1u);
  // long double on the stack (16-aligned at 0), then the 40-byte struct.
  EXPECT_EQ(plan->params[2].pieces[0].where, Piece::kStack);
  EXPECT_EQ(plan->params[2].pieces[0].index, 0u);
  EXPECT_EQ(plan->params[3].pieces[0].where, Piece::kStack);
  EXPECT_EQ(plan->params[3].pieces[0].index, 16u);
  EXPECT_EQ(plan->params[4].pieces[0].where, Piece::kGpr);  // k in rdx
  EXPECT_EQ(plan->params[4].pieces[0].index, 2u);
  EXPECT_EQ(plan->stack_bytes, 64u);
  EXPECT_TRUE(plan->needs_sse_entry);
}

TEST(Abi, FloatingPointArgumentsAndReturns) {
  ExpectSelfEquivalent("scale_add");
  ExpectSelfEquivalent("ld_poly");
  ExpectSelfEquivalent("q_twice");
  EXPECT_EQ(MustRun(Check("q_twice", "q_twice_mul")).verdict, Verdict::kEquivalent);
  // Rounding to float on the way is a difference, shown as the values.
  CheckResult r = MustRun(Check("scale_add", "scale_add_rounded"));
  EXPECT_EQ(r.verdict, Verdict::kDiverges) << FormatText(r);
  ASSERT_FALSE(r.counterexamples.empty());
  EXPECT_EQ(r.counterexamples[0].kind, "return");
  EXPECT_THAT(r.counterexamples[0].detail, HasSubstr("old returned "));
  // (x+1)^2 and x^2+2x+1 round differently in 80 bits.
  CheckResult ld = MustRun(Check("ld_poly", "ld_poly_factored"));
  EXPECT_EQ(ld.verdict, Verdict::kDiverges) << FormatText(ld);
  ASSERT_FALSE(ld.counterexamples.empty());
  EXPECT_THAT(ld.counterexamples[0].detail,
              ::testing::MatchesRegex("old returned .*L, new returned .*L"));
}

TEST(Abi, RecordsByValueInRegistersAndInMemory) {
  for (const char* f : {"pt_add", "mixed_scale", "big_rev", "union_bits", "vec_sum", "name_len"})
    ExpectSelfEquivalent(f);
  EXPECT_EQ(MustRun(Check("pt_add", "pt_add_swapped")).verdict, Verdict::kEquivalent);
  EXPECT_EQ(MustRun(Check("big_rev", "big_rev_swaps")).verdict, Verdict::kEquivalent);
  CheckResult r = MustRun(Check("big_rev", "big_rev_wrong"));
  EXPECT_EQ(r.verdict, Verdict::kDiverges) << FormatText(r);
  ASSERT_FALSE(r.counterexamples.empty());
  EXPECT_EQ(r.counterexamples[0].kind, "return");
  EXPECT_THAT(r.counterexamples[0].detail, HasSubstr("+8: "));
}

TEST(Abi, RecordsFromSigMatchDwarf) {
  CheckResult r = MustRun(Check("mixed_scale", "mixed_scale",
                                "struct mixed { int id; float w; double v; };"
                                "struct mixed mixed_scale(struct mixed m, int k)"));
  EXPECT_EQ(r.verdict, Verdict::kEquivalent) << FormatText(r);
  EXPECT_EQ(r.returned_inputs, r.inputs_run);
}

TEST(Abi, GeneratedCallbacksAndNamedOnes) {
  const char* sig =
      "int count_below(const int *xs /* 32 bytes, nonnull */, int pivot, "
      "int (*cmp)(const void *, const void *))";
  CheckResult same = MustRun(Check("count_below", "count_below_backwards", sig));
  EXPECT_EQ(same.verdict, Verdict::kEquivalent) << FormatText(same);
  EXPECT_GT(same.returned_inputs, 0u);
  CheckResult r = MustRun(Check("count_below", "count_below_or_equal", sig));
  EXPECT_EQ(r.verdict, Verdict::kDiverges) << FormatText(r);
  ASSERT_FALSE(r.counterexamples.empty());
  // The counterexample says what the generated comparator did.
  EXPECT_THAT(r.counterexamples[0].input_text, HasSubstr("cmp=<generated callback: "));
  // The target's own comparator, by name.
  const char* named =
      "int count_below(const int *xs /* 32 bytes, nonnull */, int pivot, "
      "int (*cmp)(const void *, const void *) /* fn = by_value */)";
  CheckResult by_value = MustRun(Check("count_below", "count_below_or_equal", named));
  EXPECT_EQ(by_value.verdict, Verdict::kDiverges) << FormatText(by_value);
  ASSERT_FALSE(by_value.counterexamples.empty());
  EXPECT_THAT(by_value.counterexamples[0].input_text, HasSubstr("cmp=by_value"));
  // From DWARF the callback's prototype is known too.
  ExpectSelfEquivalent("count_below");
}

TEST(Abi, GeneratedCallbacksBehaveAsTheyAreNamed) {
  CheckOptions o = Check("call_cmp", "always_seven",
                         "int f(const unsigned char *a /* 1 bytes, nonnull */, "
                         "const unsigned char *b /* 1 bytes, nonnull */, "
                         "int (*cmp)(const void *, const void *))");
  // Every input differs (new returns 7); each is expected only when old
  // returned what the behaviour promises.
  o.expects = {"old.ret == 0 when cmp == 0", "old.ret == 1 when cmp == 1",
               "old.ret == -1 when cmp == 2",
               "old.ret == (a[0] > b[0]) - (a[0] < b[0]) when cmp == 3",
               "old.ret == (a[0] < b[0]) - (a[0] > b[0]) when cmp == 4"};
  CheckResult r = MustRun(o);
  EXPECT_EQ(r.verdict, Verdict::kExpectedDivergence) << FormatText(r);
  EXPECT_EQ(r.expected_inputs, r.inputs_run);
}

TEST(Abi, VariadicWithTheArgumentsNamed) {
  const char* ints = "long sum_ints(int n, ... /* int, int, int */)";
  CheckResult same = MustRun(Check("sum_ints", "sum_ints", ints));
  EXPECT_EQ(same.verdict, Verdict::kEquivalent) << FormatText(same);
  EXPECT_EQ(same.returned_inputs, same.inputs_run);
  CheckResult r = MustRun(Check("sum_ints", "sum_ints_skips_last", ints));
  EXPECT_EQ(r.verdict, Verdict::kDiverges) << FormatText(r);
  ASSERT_FALSE(r.counterexamples.empty());
  EXPECT_THAT(r.counterexamples[0].input_text, HasSubstr("vararg3="));
  // Doubles go in xmm registers, and AL says how many.
  CheckResult doubles = MustRun(
      Check("sum_doubles", "sum_doubles", "double sum_doubles(int n, ... /* double, float */)"));
  EXPECT_EQ(doubles.verdict, Verdict::kEquivalent) << FormatText(doubles);
  // From DWARF a variadic function is refused, saying how to name its arguments.
  auto dwarf = RunCheck(Check("sum_ints", "sum_ints"));
  ASSERT_FALSE(dwarf.has_value());
  EXPECT_THAT(dwarf.error().ToString(), HasSubstr("... /* int, double */"));
}

TEST(Abi, ArgumentsOnTheStack) {
  ExpectSelfEquivalent("many");
  CheckResult r = MustRun(Check("many", "many_wrong"));
  EXPECT_EQ(r.verdict, Verdict::kDiverges) << FormatText(r);
  ASSERT_FALSE(r.counterexamples.empty());
  EXPECT_THAT(r.counterexamples[0].input_text, HasSubstr("h="));
}

// A pointer to a struct: its pointer members are generated NULL, from DWARF
// and from --sig, so a function that follows them returns instead of
// faulting on a wild pointer.
TEST(Abi, PointerMembersOfAPointedStructAreNull) {
  ExpectSelfEquivalent("link_sum");
  CheckResult r = MustRun(Check("link_sum", "link_sum",
                                "struct link { int value; struct link *next; const char *label; };"
                                "int link_sum(const struct link *l)"));
  EXPECT_EQ(r.verdict, Verdict::kEquivalent) << FormatText(r);
  EXPECT_GT(r.returned_inputs, r.inputs_run / 2) << FormatText(r);
}

}  // namespace
}  // namespace patchlab::emulator

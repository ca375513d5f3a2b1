#include "harness/lab/internal/runner_figures.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "metrics/policy.h"
#include "tests/support/status_matchers.h"

namespace patchlab::harness::internal {
namespace {

using metrics::CrashKind;
using ::testing::HasSubstr;

StatsSample At(uint64_t ops, uint64_t cpu_ns) { return {ops, 0, cpu_ns, 0}; }

// Windows of 1000 operations each; the unpatched ones cost `base` ns per
// operation and the patched ones `base * factor`.
std::vector<Window> Windows(int pairs, double base, double factor) {
  std::vector<Window> out;
  uint64_t ops = 0, cpu = 0;
  for (int i = 0; i < pairs; ++i) {
    for (bool patched : {false, true}) {
      double cost = patched ? base * factor : base;
      Window w{patched, At(ops, cpu), {}};
      ops += 1000;
      cpu += static_cast<uint64_t>(cost * 1000);
      w.end = At(ops, cpu);
      out.push_back(w);
    }
  }
  return out;
}

CellObservations Applied(int pairs, double factor) {
  CellObservations obs;
  obs.windows = Windows(pairs, 200, factor);
  for (int i = 0; i < pairs; ++i) {
    obs.calls.push_back({PatchCall::Op::kApply, 0, 300.0 + i, ""});
    if (i + 1 < pairs) obs.calls.push_back({PatchCall::Op::kRevert, 0, std::nullopt, ""});
  }
  obs.calls.push_back({PatchCall::Op::kVerify, 0, std::nullopt, ""});
  obs.pss_before_kib = 1000;
  obs.pss_after_kib = 1012;
  obs.last_stats = At(6000, 1);
  return obs;
}

TEST(RunnerStats, ParsesTheTargetsLine) {
  auto s = ParseStatsLine("ops=12 errors=3 cpu_ns=456 wall_ns=789\n");
  ASSERT_OK(s);
  EXPECT_EQ(s->ops, 12u);
  EXPECT_EQ(s->errors, 3u);
  EXPECT_EQ(s->cpu_ns, 456u);
  EXPECT_EQ(s->wall_ns, 789u);
  EXPECT_TRUE(ParseStatsLine("ops=1 errors=0 cpu_ns=2 extra=5"));
  EXPECT_FALSE(ParseStatsLine(""));
  EXPECT_FALSE(ParseStatsLine("ops=1 errors=0"));
  EXPECT_FALSE(ParseStatsLine("ops=x errors=0 cpu_ns=1"));
  EXPECT_FALSE(ParseStatsLine("garbage"));
}

TEST(RunnerFigures, CleanApplyPasses) {
  metrics::CellResult cell;
  CellObservations obs = Applied(12, 1.0);
  obs.clock = metrics::CpuClock::kGuestInstructions;
  ComputeFigures(obs, CellRules{}, cell);
  EXPECT_EQ(cell.verdict, metrics::Verdict::kPass);
  EXPECT_EQ(cell.apply, metrics::ApplyResult::kApplied);
  EXPECT_FALSE(OverheadFlagged(cell));
  ASSERT_TRUE(cell.cpu_overhead_pct);
  EXPECT_NEAR(cell.cpu_overhead_pct->value, 0.0, 1e-9);
  EXPECT_EQ(cell.cpu_outcome, metrics::OverheadOutcome::kWithin);
  EXPECT_EQ(cell.cpu_clock, metrics::CpuClock::kGuestInstructions);
  EXPECT_EQ(cell.cpu_limit_pct, 2.0);
  EXPECT_EQ(cell.cpu_windows.size(), 24u);
  ASSERT_EQ(cell.pause_us.size(), 12u);
  ASSERT_TRUE(cell.pause_median_us);
  EXPECT_DOUBLE_EQ(*cell.pause_median_us, 305.5);
  ASSERT_TRUE(cell.mem_overhead_kib);
  EXPECT_DOUBLE_EQ(*cell.mem_overhead_kib, 12.0);
  EXPECT_TRUE(cell.reasons.empty());
}

TEST(RunnerFigures, SlowPatchIsFlaggedWithItsInterval) {
  metrics::CellResult cell;
  ComputeFigures(Applied(12, 8.0), CellRules{}, cell);
  ASSERT_TRUE(cell.cpu_overhead_pct);
  EXPECT_NEAR(cell.cpu_overhead_pct->value, 700.0, 1e-6);
  EXPECT_TRUE(OverheadFlagged(cell));
  EXPECT_EQ(cell.verdict, metrics::Verdict::kFail);
  EXPECT_THAT(cell.reasons.front(), HasSubstr("cpu overhead +700.00%"));
  EXPECT_THAT(cell.reasons.front(), HasSubstr("above the 2.00% limit"));
}

TEST(RunnerFigures, OverheadStraddlingTheLimitIsNoisyAndFailsNothing) {
  // Pairs alternating 0% and 4% around a 2% limit: the interval straddles it.
  CellObservations obs = Applied(12, 1.0);
  for (size_t i = 3; i < obs.windows.size(); i += 4) {
    obs.windows[i].end.cpu_ns = obs.windows[i].begin.cpu_ns + 208000;
  }
  metrics::CellResult cell;
  ComputeFigures(obs, CellRules{}, cell);
  ASSERT_TRUE(cell.cpu_overhead_pct);
  EXPECT_LT(cell.cpu_overhead_pct->low, 2.0);
  EXPECT_GT(cell.cpu_overhead_pct->high, 2.0);
  EXPECT_EQ(cell.cpu_outcome, metrics::OverheadOutcome::kNoisy);
  EXPECT_FALSE(OverheadFlagged(cell));
  EXPECT_EQ(cell.verdict, metrics::Verdict::kPass);
  ASSERT_EQ(cell.reasons.size(), 1u);
  EXPECT_THAT(cell.reasons[0], HasSubstr("noisy, not judged"));
}

TEST(RunnerFigures, FewPairsAreNoisyHoweverClearTheyLook) {
  metrics::CellResult cell;
  ComputeFigures(Applied(3, 8.0), CellRules{}, cell);
  EXPECT_EQ(cell.cpu_outcome, metrics::OverheadOutcome::kNoisy);
  EXPECT_EQ(cell.verdict, metrics::Verdict::kPass);
}

// The native cross-check: a VM figure of +1% (instructions) beside a native
// one that resolves +4% (CPU time) is a disagreement: the native figure is
// judged (above the 2% limit) and recorded with its clock, the VM's kept
// beside it.
TEST(RunnerFigures, ANativeFigureThatDisagreesIsTheOneJudged) {
  CellObservations obs = Applied(12, 1.01);
  obs.clock = metrics::CpuClock::kGuestInstructions;
  obs.native_reference = metrics::Estimate{4.0, 3.4, 4.6, 28, 0.999};
  metrics::CellResult cell;
  ComputeFigures(obs, CellRules{}, cell);
  ASSERT_TRUE(cell.cpu_overhead_pct);
  EXPECT_DOUBLE_EQ(cell.cpu_overhead_pct->value, 4.0);
  EXPECT_EQ(cell.cpu_clock, metrics::CpuClock::kNativeCpuTime);
  ASSERT_TRUE(cell.cpu_reference_pct);
  EXPECT_NEAR(cell.cpu_reference_pct->value, 1.0, 1e-6);
  EXPECT_EQ(cell.cpu_reference_clock, metrics::CpuClock::kGuestInstructions);
  EXPECT_EQ(cell.cpu_outcome, metrics::OverheadOutcome::kAbove);
  EXPECT_EQ(cell.verdict, metrics::Verdict::kFail);
  EXPECT_THAT(::testing::PrintToString(cell.reasons), HasSubstr("native cross-check: disagree"));
  EXPECT_THAT(::testing::PrintToString(cell.reasons),
              HasSubstr("cpu overhead +4.00% (99.9% interval 3.40..4.60%, 28 pairs, "
                        "native-cpu-time) above the 2.00% limit"));
}

// A native figure within 1 pp of the VM's interval agrees: the VM's precise
// figure stays the judged one, the native beside it.
TEST(RunnerFigures, ANativeFigureThatAgreesStaysBesideTheVmFigure) {
  CellObservations obs = Applied(12, 1.01);
  obs.clock = metrics::CpuClock::kGuestInstructions;
  obs.native_reference = metrics::Estimate{1.5, 0.8, 1.9, 28, 0.999};
  metrics::CellResult cell;
  ComputeFigures(obs, CellRules{}, cell);
  EXPECT_EQ(cell.cpu_clock, metrics::CpuClock::kGuestInstructions);
  EXPECT_NEAR(cell.cpu_overhead_pct->value, 1.0, 1e-6);
  ASSERT_TRUE(cell.cpu_reference_pct);
  EXPECT_DOUBLE_EQ(cell.cpu_reference_pct->value, 1.5);
  EXPECT_EQ(cell.cpu_reference_clock, metrics::CpuClock::kNativeCpuTime);
  EXPECT_EQ(cell.cpu_outcome, metrics::OverheadOutcome::kWithin);
  EXPECT_EQ(cell.verdict, metrics::Verdict::kPass);
  ASSERT_EQ(cell.reasons.size(), 1u);
  EXPECT_THAT(cell.reasons[0], HasSubstr("native cross-check: agree"));
}

// A native figure too wide to tell (a busy lab host) moves nothing: the VM's
// figure is judged, and the reason says how wide the native one was.
TEST(RunnerFigures, ANativeFigureTooWideToTellMovesNothing) {
  CellObservations obs = Applied(12, 1.01);
  obs.clock = metrics::CpuClock::kGuestInstructions;
  obs.native_reference = metrics::Estimate{3.6, -4.1, 13.4, 28, 0.999};
  metrics::CellResult cell;
  ComputeFigures(obs, CellRules{}, cell);
  EXPECT_EQ(cell.cpu_clock, metrics::CpuClock::kGuestInstructions);
  EXPECT_EQ(cell.cpu_outcome, metrics::OverheadOutcome::kWithin);
  EXPECT_EQ(cell.cpu_reference_clock, metrics::CpuClock::kNativeCpuTime);
  ASSERT_EQ(cell.reasons.size(), 1u);
  EXPECT_THAT(cell.reasons[0], HasSubstr("native cross-check: unresolved"));
  EXPECT_THAT(cell.reasons[0], HasSubstr("17.50 pp wide"));
}

// Without a native figure the reason says why; a native cell has no reference.
TEST(RunnerFigures, NoNativeFigureSaysWhyAndANativeCellNeedsNone) {
  CellObservations obs = Applied(12, 1.01);
  obs.clock = metrics::CpuClock::kGuestInstructions;
  obs.native_reference_note = "the native run gave no figure (apply refused)";
  metrics::CellResult cell;
  ComputeFigures(obs, CellRules{}, cell);
  EXPECT_FALSE(cell.cpu_reference_pct);
  ASSERT_EQ(cell.reasons.size(), 1u);
  EXPECT_THAT(cell.reasons[0], HasSubstr("native cross-check: none: the native run gave no"));

  obs.clock = metrics::CpuClock::kNativeCpuTime;
  obs.native_reference = metrics::Estimate{9.0, 8.0, 10.0, 28, 0.999};
  ComputeFigures(obs, CellRules{}, cell);
  EXPECT_FALSE(cell.cpu_reference_pct);
  EXPECT_NEAR(cell.cpu_overhead_pct->value, 1.0, 1e-6);
}

TEST(RunnerFigures, ScenarioLimitsTightenThePolicyNeverLoosenIt) {
  Scenario loose;
  loose.limits.cpu_overhead_pct = 10;
  CellRules r = RulesFor(loose, metrics::DefaultPolicy());
  EXPECT_EQ(r.cpu.limit_pct, 2.0);
  EXPECT_EQ(r.scenario_cpu_limit_pct, 10.0);
  Scenario tight;
  tight.limits.cpu_overhead_pct = 0.5;
  EXPECT_EQ(RulesFor(tight, metrics::DefaultPolicy()).cpu.limit_pct, 0.5);
  EXPECT_EQ(RulesFor(Scenario{}, metrics::DefaultPolicy()).cpu.limit_pct, 2.0);
  EXPECT_EQ(RulesFor(Scenario{}, metrics::DefaultPolicy()).cpu.min_pairs, 12u);
}

TEST(RunnerFigures, RefusedApplyIsNotHotpatchable) {
  CellObservations obs;
  obs.windows = Windows(1, 100, 1.0);
  obs.windows.pop_back();
  obs.calls.push_back(
      {PatchCall::Op::kApply, 3, std::nullopt,
       "refused: poll_events: a thread stayed inside it past the 1000 ms timeout\n"});
  metrics::CellResult cell;
  ComputeFigures(obs, CellRules{}, cell);
  EXPECT_EQ(cell.verdict, metrics::Verdict::kNotHotpatchable);
  EXPECT_EQ(cell.apply, metrics::ApplyResult::kRefused);
  EXPECT_THAT(cell.apply_reason, HasSubstr("poll_events"));
  ASSERT_FALSE(cell.reasons.empty());
  EXPECT_THAT(cell.reasons[0], HasSubstr("not hotpatchable — needs a restart"));
  EXPECT_FALSE(cell.cpu_overhead_pct);
}

TEST(RunnerFigures, CrashAfterApplyFails) {
  CellObservations obs = Applied(1, 1.0);
  obs.crashes.push_back({CrashKind::kWorkloadSignal, "pricer killed by SIGSEGV"});
  obs.crashes.push_back({CrashKind::kSegfault, "pricer[88]: segfault at 7f00 ip 1 sp 2 error 4"});
  metrics::CellResult cell;
  ComputeFigures(obs, CellRules{}, cell);
  EXPECT_EQ(cell.verdict, metrics::Verdict::kFail);
  EXPECT_EQ(cell.TotalCrashes(), 2);
  EXPECT_EQ(cell.crashes[CrashKind::kWorkloadSignal], 1);
  EXPECT_THAT(cell.reasons[0], HasSubstr("SIGSEGV"));
}

TEST(RunnerFigures, WrongResultsFail) {
  CellObservations obs = Applied(1, 1.0);
  obs.last_stats->errors = 5;
  metrics::CellResult cell;
  ComputeFigures(obs, CellRules{}, cell);
  EXPECT_EQ(cell.verdict, metrics::Verdict::kFail);
  EXPECT_THAT(cell.reasons, ::testing::Contains(HasSubstr("5 wrong results")));
}

TEST(RunnerFigures, RevertFailureAfterApplyFails) {
  CellObservations obs = Applied(2, 1.0);
  obs.calls[1].exit_code = 4;
  obs.calls[1].message = "rolled back: write failed";
  metrics::CellResult cell;
  ComputeFigures(obs, CellRules{}, cell);
  EXPECT_EQ(cell.verdict, metrics::Verdict::kFail);
  EXPECT_EQ(cell.apply, metrics::ApplyResult::kApplied);
  EXPECT_THAT(cell.reasons, ::testing::Contains(HasSubstr("revert failed (hotpatch exit 4)")));
}

TEST(RunnerFigures, InfraErrorOverridesEverything) {
  CellObservations obs = Applied(1, 1.0);
  obs.infra_error = "starting the machine: qemu exited 1";
  metrics::CellResult cell;
  ComputeFigures(obs, CellRules{}, cell);
  EXPECT_EQ(cell.verdict, metrics::Verdict::kInfraError);
  EXPECT_EQ(cell.apply, metrics::ApplyResult::kNotRun);
  EXPECT_EQ(cell.TotalCrashes(), 0);
}

TEST(RunnerExpectation, ChecksEveryClause) {
  metrics::CellResult cell;
  cell.verdict = metrics::Verdict::kFail;
  cell.crashes[CrashKind::kWorkloadSignal] = 1;
  cell.reasons = {"crash (workload-signal): pricer killed by SIGSEGV"};
  ExpectSpec expect;
  expect.verdict = Verdict::kFail;
  expect.reason_contains = "SIGSEGV";
  std::vector<std::string> why;
  EXPECT_TRUE(MetExpectation(cell, expect, why)) << why.size();

  expect.reason_contains = "SIGBUS";
  EXPECT_FALSE(MetExpectation(cell, expect, why));
  EXPECT_THAT(why[0], HasSubstr("SIGBUS"));

  ExpectSpec pass;
  EXPECT_FALSE(MetExpectation(cell, pass, why));
  EXPECT_EQ(why.size(), 2u);  // verdict and crashes

  ExpectSpec flagged;
  flagged.verdict = Verdict::kFail;
  flagged.overhead_flagged = true;
  EXPECT_FALSE(MetExpectation(cell, flagged, why));
  cell.cpu_outcome = metrics::OverheadOutcome::kNoisy;  // noisy is not flagged
  EXPECT_FALSE(MetExpectation(cell, flagged, why));
  cell.cpu_outcome = metrics::OverheadOutcome::kAbove;
  EXPECT_TRUE(MetExpectation(cell, flagged, why));

  cell.verdict = metrics::Verdict::kInfraError;
  EXPECT_FALSE(MetExpectation(cell, expect, why));
}

}  // namespace
}  // namespace patchlab::harness::internal

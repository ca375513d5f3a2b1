#include "harness/lab/internal/runner_figures.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

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
  bool flagged = true;
  ComputeFigures(Applied(3, 1.0), LimitsSpec{}, cell, flagged);
  EXPECT_EQ(cell.verdict, metrics::Verdict::kPass);
  EXPECT_EQ(cell.apply, metrics::ApplyResult::kApplied);
  EXPECT_FALSE(flagged);
  ASSERT_TRUE(cell.cpu_overhead_pct);
  EXPECT_NEAR(cell.cpu_overhead_pct->value, 0.0, 1e-9);
  ASSERT_EQ(cell.pause_us.size(), 3u);
  ASSERT_TRUE(cell.pause_median_us);
  EXPECT_DOUBLE_EQ(*cell.pause_median_us, 301.0);
  ASSERT_TRUE(cell.mem_overhead_kib);
  EXPECT_DOUBLE_EQ(*cell.mem_overhead_kib, 12.0);
  EXPECT_TRUE(cell.reasons.empty());
}

TEST(RunnerFigures, SlowPatchIsFlaggedWithItsInterval) {
  metrics::CellResult cell;
  bool flagged = false;
  ComputeFigures(Applied(3, 8.0), LimitsSpec{}, cell, flagged);
  ASSERT_TRUE(cell.cpu_overhead_pct);
  EXPECT_NEAR(cell.cpu_overhead_pct->value, 700.0, 1e-6);
  EXPECT_TRUE(flagged);
  EXPECT_EQ(cell.verdict, metrics::Verdict::kFail);
  EXPECT_THAT(cell.reasons.front(), HasSubstr("cpu overhead 700.0%"));
}

TEST(RunnerFigures, OverheadWhoseIntervalReachesTheLimitIsNotFlagged) {
  // Pairs at 0%, 1% and 9%: the median (1%) is under a 2% limit and the
  // interval (0..9%) is not wholly above it.
  CellObservations obs = Applied(3, 1.0);
  obs.windows[3].end.cpu_ns = obs.windows[3].begin.cpu_ns + 202000;
  obs.windows[5].end.cpu_ns = obs.windows[5].begin.cpu_ns + 218000;
  metrics::CellResult cell;
  bool flagged = true;
  ComputeFigures(obs, LimitsSpec{}, cell, flagged);
  ASSERT_TRUE(cell.cpu_overhead_pct);
  EXPECT_NEAR(cell.cpu_overhead_pct->value, 1.0, 1e-6);
  EXPECT_FALSE(flagged);
  EXPECT_EQ(cell.verdict, metrics::Verdict::kPass);
}

TEST(RunnerFigures, RefusedApplyIsNotHotpatchable) {
  CellObservations obs;
  obs.windows = Windows(1, 100, 1.0);
  obs.windows.pop_back();
  obs.calls.push_back(
      {PatchCall::Op::kApply, 3, std::nullopt,
       "refused: poll_events: a thread stayed inside it past the 1000 ms timeout\n"});
  metrics::CellResult cell;
  bool flagged = false;
  ComputeFigures(obs, LimitsSpec{}, cell, flagged);
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
  bool flagged = false;
  ComputeFigures(obs, LimitsSpec{}, cell, flagged);
  EXPECT_EQ(cell.verdict, metrics::Verdict::kFail);
  EXPECT_EQ(cell.TotalCrashes(), 2);
  EXPECT_EQ(cell.crashes[CrashKind::kWorkloadSignal], 1);
  EXPECT_THAT(cell.reasons[0], HasSubstr("SIGSEGV"));
}

TEST(RunnerFigures, WrongResultsFail) {
  CellObservations obs = Applied(1, 1.0);
  obs.last_stats->errors = 5;
  metrics::CellResult cell;
  bool flagged = false;
  ComputeFigures(obs, LimitsSpec{}, cell, flagged);
  EXPECT_EQ(cell.verdict, metrics::Verdict::kFail);
  EXPECT_THAT(cell.reasons.back(), HasSubstr("5 wrong results"));
}

TEST(RunnerFigures, RevertFailureAfterApplyFails) {
  CellObservations obs = Applied(2, 1.0);
  obs.calls[1].exit_code = 4;
  obs.calls[1].message = "rolled back: write failed";
  metrics::CellResult cell;
  bool flagged = false;
  ComputeFigures(obs, LimitsSpec{}, cell, flagged);
  EXPECT_EQ(cell.verdict, metrics::Verdict::kFail);
  EXPECT_EQ(cell.apply, metrics::ApplyResult::kApplied);
  EXPECT_THAT(cell.reasons.back(), HasSubstr("revert failed (hotpatch exit 4)"));
}

TEST(RunnerFigures, InfraErrorOverridesEverything) {
  CellObservations obs = Applied(1, 1.0);
  obs.infra_error = "starting the machine: qemu exited 1";
  metrics::CellResult cell;
  bool flagged = false;
  ComputeFigures(obs, LimitsSpec{}, cell, flagged);
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
  EXPECT_TRUE(MetExpectation(cell, false, expect, why)) << why.size();

  expect.reason_contains = "SIGBUS";
  EXPECT_FALSE(MetExpectation(cell, false, expect, why));
  EXPECT_THAT(why[0], HasSubstr("SIGBUS"));

  ExpectSpec pass;
  EXPECT_FALSE(MetExpectation(cell, false, pass, why));
  EXPECT_EQ(why.size(), 2u);  // verdict and crashes

  ExpectSpec flagged;
  flagged.verdict = Verdict::kFail;
  flagged.overhead_flagged = true;
  EXPECT_FALSE(MetExpectation(cell, false, flagged, why));
  EXPECT_TRUE(MetExpectation(cell, true, flagged, why));

  cell.verdict = metrics::Verdict::kInfraError;
  EXPECT_FALSE(MetExpectation(cell, false, expect, why));
}

}  // namespace
}  // namespace patchlab::harness::internal

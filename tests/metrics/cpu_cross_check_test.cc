// The native cross-check of a VM's CPU figure: only a disagreement the two
// intervals resolve moves the judgement to the native figure, and a stored
// cell gives the same answer to every reader (gate, reports).
#include "metrics/cpu_cross_check.h"

#include <gtest/gtest.h>

#include "metrics/gate.h"
#include "metrics/policy.h"
#include "tests/metrics/test_util.h"
#include "tests/support/status_matchers.h"

namespace patchlab::metrics {
namespace {

using ::testing::HasSubstr;

TEST(CpuCrossCheck, AgreesWithinOnePercentagePointOfTheVmInterval) {
  Estimate vm{1.17, 1.08, 1.55, 12, 0.999};
  EXPECT_EQ(CrossCheckCpu(vm, {1.5, 0.2, 2.5, 28}), CrossCheck::kAgree);
  EXPECT_EQ(CrossCheckCpu(vm, {1.2, 0.1, 2.5, 28}), CrossCheck::kAgree);  // near the edges
  EXPECT_FALSE(JudgeNative(CrossCheck::kAgree));
}

TEST(CpuCrossCheck, DisagreesOnlyWhenTheIntervalsAreMoreThanOnePointApart) {
  Estimate vm{1.17, 1.08, 1.55, 12, 0.999};
  EXPECT_EQ(CrossCheckCpu(vm, {3.0, 2.6, 3.4, 28}), CrossCheck::kDisagree);
  EXPECT_EQ(CrossCheckCpu(vm, {-1.0, -1.5, 0.0, 28}), CrossCheck::kDisagree);
  EXPECT_TRUE(JudgeNative(CrossCheck::kDisagree));
  // Medians 2.4 pp apart, yet the native interval reaches within 1 pp: not resolved.
  EXPECT_EQ(CrossCheckCpu(vm, {3.6, 2.5, 4.7, 28}), CrossCheck::kUnresolved);
  // A wide native figure around the VM's: nothing can be said either way.
  EXPECT_EQ(CrossCheckCpu(vm, {3.6, -4.1, 13.4, 28}), CrossCheck::kUnresolved);
  // Apart, but too wide to overrule the VM: a busy host's native figure
  // (seen in a ci/lab run beside a full test run).
  EXPECT_EQ(CrossCheckCpu(vm, {-10.75, -26.82, -2.52, 12}), CrossCheck::kUnresolved);
  EXPECT_EQ(CrossCheckCpu(vm, {9.28, 2.86, 18.73, 12}), CrossCheck::kUnresolved);
  EXPECT_EQ(CrossCheckCpu(vm, {9.0, 7.0, 11.0, 28}), CrossCheck::kDisagree);  // 4 pp wide
  EXPECT_FALSE(JudgeNative(CrossCheck::kUnresolved));
}

TEST(CpuCrossCheck, AStoredCellIsCheckedWhicheverFigureIsJudged) {
  CellResult c;
  EXPECT_FALSE(CpuCrossCheckOf(c));
  EXPECT_EQ(DescribeCpuReference(c), "");
  c.cpu_overhead_pct = Estimate{4.0, 3.4, 4.6, 28, 0.999};
  c.cpu_clock = CpuClock::kNativeCpuTime;
  c.cpu_reference_pct = Estimate{1.17, 1.08, 1.55, 12};
  c.cpu_reference_clock = CpuClock::kGuestInstructions;
  EXPECT_EQ(CpuCrossCheckOf(c), CrossCheck::kDisagree);
  EXPECT_EQ(DescribeCpuReference(c),
            "beside it: guest-instructions +1.17% [1.08, 1.55] (12 pairs), cross-check disagree");
  std::swap(c.cpu_overhead_pct, c.cpu_reference_pct);
  std::swap(c.cpu_clock, c.cpu_reference_clock);
  EXPECT_EQ(CpuCrossCheckOf(c), CrossCheck::kDisagree);
  c.cpu_reference_clock = CpuClock::kGuestCpuTime;  // two VM figures: no cross-check
  EXPECT_FALSE(CpuCrossCheckOf(c));
}

// `patchlab gate` shows each cell's judged figure with its clock and the
// figure beside it; the JSON carries the same lines.
TEST(CpuCrossCheck, TheGateShowsBothFigures) {
  CellResult c = testing::GoodCell(1, "deb12");
  c.cpu_overhead_pct = Estimate{1.17, 1.08, 1.55, 12, 0.999};
  c.cpu_clock = CpuClock::kGuestInstructions;
  c.cpu_reference_pct = Estimate{2.75, -1.7, 7.9, 28};
  c.cpu_reference_clock = CpuClock::kNativeCpuTime;
  GateDecision d = JudgeCells("fix-1", {c}, {}, DefaultPolicy());
  EXPECT_EQ(d.outcome, GateOutcome::kShip) << d.Explain();
  EXPECT_THAT(d.Explain(), HasSubstr("cpu: " + c.key.ToString() +
                                     ": +1.17% [1.08, 1.55] within (guest-instructions, 12 "
                                     "pairs); beside it: native-cpu-time +2.75% [-1.70, 7.90] "
                                     "(28 pairs), cross-check unresolved"));
  EXPECT_THAT(CpuFigureWithRule(c, DefaultPolicy()), HasSubstr("beside it: native-cpu-time"));
}

}  // namespace
}  // namespace patchlab::metrics

// The interval, the one rule and the adaptive stopping rule on synthetic
// window pairs whose true overhead is known.
#include "metrics/overhead_rule.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "metrics/window_sample.h"
#include "tests/support/status_matchers.h"

namespace patchlab::metrics {
namespace {

// Window pairs of a target whose true overhead is `true_pct`: each window's
// cost per operation carries multiplicative noise of `noise` (a log-normal
// sigma), and a slow drift both windows of a pair share (a neighbour's load
// coming and going), as host noise does to time-based figures.
class SyntheticTarget {
 public:
  SyntheticTarget(double true_pct, double noise, uint64_t seed)
      : factor_(1 + true_pct / 100), noise_(noise), rng_(seed) {}
  void MeasurePair(PairedCosts& into) {
    drift_ = std::clamp(drift_ * std::exp(step_(rng_)), 0.5, 2.0);
    into.unpatched.push_back(1000 * drift_ * std::exp(noise_ * unit_(rng_)));
    into.patched.push_back(1000 * factor_ * drift_ * std::exp(noise_ * unit_(rng_)));
  }

 private:
  double factor_;
  double noise_;
  std::mt19937_64 rng_;
  std::normal_distribution<double> unit_{0, 1};
  std::normal_distribution<double> step_{0, 0.05};
  double drift_ = 1;
};

// Measures as the runner does: min_pairs first, then `step` more per look.
StoppingDecision MeasureAdaptively(SyntheticTarget& target, const StoppingRule& rule) {
  PairedCosts pairs;
  while (pairs.unpatched.size() < rule.min_pairs) target.MeasurePair(pairs);
  while (true) {
    StoppingDecision d = DecideStopping(pairs.unpatched, pairs.patched, rule);
    if (!d.measure_more) return d;
    for (size_t i = 0; i < rule.step; ++i) target.MeasurePair(pairs);
  }
}

TEST(SignedRank, ExactTailsMatchTheTables) {
  // n = 6: only T = 0 lies in a 5% two-sided tail (1/64 each side).
  EXPECT_DOUBLE_EQ(SignedRankCdf(6, 0), 1.0 / 64);
  // n = 10: the 5% two-sided critical value is 8 (P(T <= 8) = 25/1024).
  EXPECT_NEAR(SignedRankCdf(10, 8), 25.0 / 1024, 1e-12);
  EXPECT_NEAR(SignedRankCdf(10, 9), 33.0 / 1024, 1e-12);
  EXPECT_DOUBLE_EQ(SignedRankCdf(10, 1000), 1.0);
}

TEST(HodgesLehmann, ConstantRatioGivesAPointInterval) {
  std::vector<double> unpatched = {100, 200, 100, 400, 100, 100, 100, 100};
  std::vector<double> patched = {101, 202, 101, 404, 101, 101, 101, 101};
  auto e = HodgesLehmannOverheadPct(unpatched, patched, kLookConfidence);
  ASSERT_TRUE(e.has_value());
  EXPECT_NEAR(e->value, 1.0, 1e-9);
  EXPECT_NEAR(e->low, 1.0, 1e-9);
  EXPECT_NEAR(e->high, 1.0, 1e-9);
  EXPECT_EQ(e->samples, 8u);
  EXPECT_NEAR(e->coverage, 1 - 2.0 / 256, 1e-12);  // 8 pairs: the full range
  EXPECT_FALSE(HodgesLehmannOverheadPct({1, 2}, {1}).has_value());
  EXPECT_FALSE(HodgesLehmannOverheadPct({0}, {1}).has_value());
  EXPECT_FALSE(HodgesLehmannOverheadPct({1}, {0}).has_value());
}

TEST(HodgesLehmann, FewPairsSayHowLittleTheyCover) {
  auto e = HodgesLehmannOverheadPct({100, 100, 100}, {110, 120, 130}, kLookConfidence);
  ASSERT_TRUE(e.has_value());
  EXPECT_NEAR(e->coverage, 1 - 2.0 / 8, 1e-12);  // the full range of 3 pairs: 75%
  // However clearly above the limit it looks, it resolves nothing.
  EXPECT_EQ(JudgeOverhead(*e, 2.0, OverheadJudgedOn::kInterval), OverheadOutcome::kNoisy);
  EXPECT_EQ(JudgeOverhead(*e, 2.0, OverheadJudgedOn::kUpperBound), OverheadOutcome::kAbove);
}

TEST(HodgesLehmann, IntervalCoversTheTrueOverheadAsOftenAsItClaims) {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> noise(0, 0.05);
  int covered = 0;
  constexpr int kTrials = 2000;
  for (int t = 0; t < kTrials; ++t) {
    std::vector<double> u, p;
    for (int i = 0; i < 12; ++i) {
      u.push_back(1000 * std::exp(noise(rng)));
      p.push_back(1030 * std::exp(noise(rng)));
    }
    auto e = HodgesLehmannOverheadPct(u, p, kLookConfidence);
    ASSERT_TRUE(e.has_value());
    if (e->low <= 3.0 && 3.0 <= e->high) ++covered;
  }
  // Claimed >= 99.9%; allow the binomial spread of 2000 trials.
  EXPECT_GE(covered, kTrials * 995 / 1000);
}

TEST(OverheadRule, IntervalEntirelyOnOneSideDecides) {
  Estimate below{0.5, 0.2, 1.9, 10, 0.99};
  Estimate above{4.0, 2.0, 6.0, 10, 0.99};
  Estimate straddles{1.5, 0.5, 2.5, 10, 0.99};
  EXPECT_EQ(JudgeOverhead(below, 2, OverheadJudgedOn::kInterval), OverheadOutcome::kWithin);
  EXPECT_EQ(JudgeOverhead(above, 2, OverheadJudgedOn::kInterval), OverheadOutcome::kAbove);
  EXPECT_EQ(JudgeOverhead(straddles, 2, OverheadJudgedOn::kInterval), OverheadOutcome::kNoisy);
  EXPECT_EQ(JudgeOverhead(straddles, 2, OverheadJudgedOn::kUpperBound), OverheadOutcome::kAbove);
  EXPECT_EQ(JudgeOverhead(straddles, 2, OverheadJudgedOn::kMedian), OverheadOutcome::kWithin);
  // Rows recorded before coverage was stored (coverage 0) are judged on their interval.
  Estimate old_row{0.5, 0.2, 1.9, 3, 0};
  EXPECT_EQ(JudgeOverhead(old_row, 2, OverheadJudgedOn::kInterval), OverheadOutcome::kWithin);
}

TEST(OverheadRule, ScenarioLimitOnlyTightens) {
  EXPECT_EQ(EffectiveCpuLimit(2.0, std::nullopt), 2.0);
  EXPECT_EQ(EffectiveCpuLimit(2.0, 1.0), 1.0);
  EXPECT_EQ(EffectiveCpuLimit(2.0, 10.0), 2.0);
}

TEST(OverheadRule, NamesRoundTrip) {
  for (OverheadOutcome o :
       {OverheadOutcome::kWithin, OverheadOutcome::kAbove, OverheadOutcome::kNoisy}) {
    auto parsed = ParseOverheadOutcome(OverheadOutcomeName(o));
    ASSERT_OK(parsed);
    EXPECT_EQ(*parsed, o);
  }
  EXPECT_THAT(ParseOverheadOutcome("maybe").error().ToString(), ::testing::HasSubstr("maybe"));
}

TEST(StoppingRule, TrueZeroWithHeavyNoiseNeverFails) {
  StoppingRule rule;  // 2% limit, 12..28 pairs
  int noisy = 0;
  for (uint64_t seed = 1; seed <= 300; ++seed) {
    SyntheticTarget target(0.0, 0.15, seed);
    StoppingDecision d = MeasureAdaptively(target, rule);
    ASSERT_TRUE(d.estimate.has_value());
    EXPECT_NE(d.outcome, OverheadOutcome::kAbove)
        << "seed " << seed << ": " << d.estimate->value << "% [" << d.estimate->low << ", "
        << d.estimate->high << "]";
    if (d.outcome == OverheadOutcome::kNoisy) {
      ++noisy;
      EXPECT_EQ(d.estimate->samples, rule.max_pairs) << "noisy only once the budget is spent";
    }
  }
  // With 15% noise per window most cells cannot be resolved: they say so.
  EXPECT_GT(noisy, 150);
}

TEST(StoppingRule, TruePlusEightWithLightNoiseIsFlaggedAtTheFirstLook) {
  StoppingRule rule;
  for (uint64_t seed = 1; seed <= 300; ++seed) {
    SyntheticTarget target(8.0, 0.01, seed);
    StoppingDecision d = MeasureAdaptively(target, rule);
    ASSERT_TRUE(d.estimate.has_value());
    EXPECT_EQ(d.outcome, OverheadOutcome::kAbove) << "seed " << seed;
    EXPECT_EQ(d.estimate->samples, rule.min_pairs) << "seed " << seed;
  }
}

TEST(StoppingRule, TrueZeroWithLightNoiseShips) {
  StoppingRule rule;
  for (uint64_t seed = 1; seed <= 300; ++seed) {
    SyntheticTarget target(0.0, 0.01, seed);
    StoppingDecision d = MeasureAdaptively(target, rule);
    EXPECT_EQ(d.outcome, OverheadOutcome::kWithin) << "seed " << seed;
  }
}

TEST(StoppingRule, MeasuresMoreWhileItStraddlesThenStopsAtTheBudget) {
  StoppingRule rule;
  std::vector<double> u(12, 100.0);
  std::vector<double> p = {101, 103, 101, 103, 101, 103, 101, 103, 101, 103, 101, 103};
  StoppingDecision d = DecideStopping(u, p, rule);
  EXPECT_TRUE(d.measure_more);  // 1..3% around a 2% limit
  d = DecideStopping(u, p, rule, /*budget_left=*/false);
  EXPECT_FALSE(d.measure_more);
  EXPECT_EQ(d.outcome, OverheadOutcome::kNoisy);
  // Fewer than min_pairs never stop on their own, however clear they look.
  d = DecideStopping(std::vector<double>(11, 100.0), std::vector<double>(11, 150.0), rule);
  EXPECT_TRUE(d.measure_more);
  d = DecideStopping({}, {}, rule);
  EXPECT_TRUE(d.measure_more);
  EXPECT_FALSE(d.estimate.has_value());
}

TEST(WindowSamples, PairsAdjacentWindowsInEitherOrder) {
  // A B B A A B, then a lone B: three pairs, the last window unpaired.
  std::vector<WindowSample> w = {{false, 100, 1}, {true, 220, 2}, {true, 330, 3}, {false, 300, 3},
                                 {false, 400, 4}, {true, 440, 4}, {true, 10, 1}};
  PairedCosts pairs = PairAdjacentWindows(w);
  ASSERT_EQ(pairs.unpatched.size(), 3u);
  EXPECT_EQ(pairs.unpatched, (std::vector<double>{100, 100, 100}));
  EXPECT_EQ(pairs.patched, (std::vector<double>{110, 110, 110}));
  // A window that did no work pairs with nothing.
  pairs = PairAdjacentWindows({{false, 100, 0}, {true, 100, 1}, {false, 100, 1}});
  EXPECT_EQ(pairs.unpatched.size(), 1u);
}

}  // namespace
}  // namespace patchlab::metrics

#include "metrics/stats.h"

#include <gtest/gtest.h>

namespace patchlab::metrics {
namespace {

TEST(Stats, MedianOfOddEvenAndEmpty) {
  EXPECT_EQ(Median({3, 1, 2}), 2.0);
  EXPECT_EQ(Median({4, 1, 3, 2}), 2.5);
  EXPECT_FALSE(Median({}).has_value());
  EXPECT_EQ(Quantile({0, 10}, 0.5), 5.0);
  EXPECT_EQ(Quantile({0, 10, 20}, 1.0), 20.0);
}

TEST(Stats, OrderStatisticIntervalCoversTheMedianAndNarrowsWithSamples) {
  std::vector<double> few = {5, 1, 4, 2, 3};
  auto e = MedianWithInterval(few);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->value, 3);
  // Five samples cannot give 95% coverage: the full range is reported.
  EXPECT_EQ(e->low, 1);
  EXPECT_EQ(e->high, 5);

  std::vector<double> many;
  for (int i = 1; i <= 100; ++i) many.push_back(i);
  e = MedianWithInterval(many);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->value, 50.5);
  // For n = 100 the 95% order-statistic interval is [x(40), x(61)] (1-based).
  EXPECT_EQ(e->low, 40);
  EXPECT_EQ(e->high, 61);
  EXPECT_EQ(e->samples, 100u);
}

TEST(Stats, PairedOverheadIsTheMedianOfPerWindowRatios) {
  std::vector<double> unpatched = {100, 200, 100, 400, 100, 100, 100, 100};
  std::vector<double> patched = {101, 202, 101, 404, 101, 101, 101, 101};
  auto e = PairedOverheadPct(unpatched, patched);
  ASSERT_TRUE(e.has_value());
  EXPECT_NEAR(e->value, 1.0, 1e-9);
  EXPECT_NEAR(e->low, 1.0, 1e-9);
  EXPECT_NEAR(e->high, 1.0, 1e-9);
  EXPECT_FALSE(PairedOverheadPct({1, 2}, {1}).has_value());
  EXPECT_FALSE(PairedOverheadPct({0}, {1}).has_value());
}

TEST(Stats, BootstrapOverheadIsDeterministicAndBracketsTheEstimate) {
  std::vector<double> unpatched, patched;
  for (int i = 0; i < 40; ++i) {
    unpatched.push_back(100 + (i * 37 % 11));
    patched.push_back(110 + (i * 53 % 13));
  }
  auto a = OverheadPct(unpatched, patched);
  auto b = OverheadPct(unpatched, patched);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->low, b->low);
  EXPECT_EQ(a->high, b->high);
  EXPECT_LE(a->low, a->value);
  EXPECT_GE(a->high, a->value);
  EXPECT_GT(a->value, 5);
  EXPECT_LT(a->value, 15);
  EXPECT_GT(a->low, 0) << "a clear 10% slowdown must not include zero";
  EXPECT_FALSE(OverheadPct({}, patched).has_value());
}

}  // namespace
}  // namespace patchlab::metrics

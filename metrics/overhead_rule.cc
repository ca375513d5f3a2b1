#include "metrics/overhead_rule.h"

#include <algorithm>
#include <cstdlib>

namespace patchlab::metrics {

std::string_view OverheadOutcomeName(OverheadOutcome o) {
  switch (o) {
    case OverheadOutcome::kWithin:
      return "within";
    case OverheadOutcome::kAbove:
      return "above";
    case OverheadOutcome::kNoisy:
      return "noisy";
  }
  std::abort();
}

Result<OverheadOutcome> ParseOverheadOutcome(std::string_view name) {
  for (OverheadOutcome o :
       {OverheadOutcome::kWithin, OverheadOutcome::kAbove, OverheadOutcome::kNoisy}) {
    if (OverheadOutcomeName(o) == name) return o;
  }
  return Fail(ErrorCode::kInvalidArgument,
              "unknown CPU overhead outcome '{}' (expected one of: within, above, noisy)", name);
}

std::string_view OverheadJudgedOnName(OverheadJudgedOn j) {
  switch (j) {
    case OverheadJudgedOn::kInterval:
      return "interval";
    case OverheadJudgedOn::kUpperBound:
      return "upper-bound";
    case OverheadJudgedOn::kMedian:
      return "median";
  }
  std::abort();
}

OverheadOutcome JudgeOverhead(const Estimate& e, double limit_pct, OverheadJudgedOn on) {
  // An interval that covers too little (a full range of very few pairs) says
  // nothing about the true overhead: it can resolve nothing.
  bool thin = e.coverage > 0 && e.coverage < kMinCoverage;
  switch (on) {
    case OverheadJudgedOn::kMedian:
      return e.value >= limit_pct ? OverheadOutcome::kAbove : OverheadOutcome::kWithin;
    case OverheadJudgedOn::kUpperBound:
      return !thin && e.high < limit_pct ? OverheadOutcome::kWithin : OverheadOutcome::kAbove;
    case OverheadJudgedOn::kInterval:
      if (thin) return OverheadOutcome::kNoisy;
      if (e.high < limit_pct) return OverheadOutcome::kWithin;
      if (e.low >= limit_pct) return OverheadOutcome::kAbove;
      return OverheadOutcome::kNoisy;
  }
  std::abort();
}

std::string DescribeOverheadRule(double limit_pct, OverheadJudgedOn on) {
  double confidence = kLookConfidence * 100;
  switch (on) {
    case OverheadJudgedOn::kMedian:
      return fmt::format("below {:.2f}%, judged on the median alone", limit_pct);
    case OverheadJudgedOn::kUpperBound:
      return fmt::format("below {:.2f}%, judged on the {:g}% interval's high end", limit_pct,
                         confidence);
    case OverheadJudgedOn::kInterval:
      return fmt::format(
          "below {:.2f}%: {:g}% interval entirely below is within, entirely at or above is "
          "above, straddling is noisy (not judged)",
          limit_pct, confidence);
  }
  std::abort();
}

double EffectiveCpuLimit(double policy_limit_pct, std::optional<double> scenario_limit_pct) {
  if (!scenario_limit_pct) return policy_limit_pct;
  return std::min(policy_limit_pct, *scenario_limit_pct);
}

StoppingDecision DecideStopping(const std::vector<double>& unpatched,
                                const std::vector<double>& patched, const StoppingRule& rule,
                                bool budget_left) {
  StoppingDecision d;
  d.estimate = HodgesLehmannOverheadPct(unpatched, patched, kLookConfidence);
  size_t pairs = std::min(unpatched.size(), patched.size());
  bool budget_spent = !budget_left || pairs >= rule.max_pairs;
  if (!d.estimate) {
    d.measure_more = !budget_spent;
    d.outcome = OverheadOutcome::kNoisy;
    return d;
  }
  // Measuring goes on while the interval straddles the limit, whatever the
  // policy's way of judging; before the first look nothing is resolved, so a
  // lucky handful of pairs cannot decide (the looks share the error budget).
  OverheadOutcome by_interval =
      JudgeOverhead(*d.estimate, rule.limit_pct, OverheadJudgedOn::kInterval);
  bool resolved = pairs >= rule.min_pairs && by_interval != OverheadOutcome::kNoisy;
  d.measure_more = !resolved && !budget_spent;
  // The outcome depends on the stored figure alone (value, interval,
  // coverage), so the gate reading it back reaches the same one.
  d.outcome = JudgeOverhead(*d.estimate, rule.limit_pct, rule.judged_on);
  return d;
}

}  // namespace patchlab::metrics

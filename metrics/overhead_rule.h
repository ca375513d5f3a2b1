// The one rule that judges a CPU overhead figure against its limit. The
// runner's cell verdict, its adaptive measurement and `patchlab gate` all call
// JudgeOverhead on the same stored figure, so the run and the gate cannot
// disagree about a cell.
//
// A figure is an Estimate (metrics/stats.h) with an interval. Under the
// default way of judging (`interval`) it is:
//   within  the whole interval lies below the limit            (may ship)
//   above   the whole interval lies at or above the limit      (flagged)
//   noisy   the interval straddles the limit, or covers too little to say:
//           neither a pass nor a fail on CPU; measure more, or on a quieter host.
//
// The stopping rule measures window pairs until the figure is within or above,
// or the budget is spent (then it is noisy). Every look uses a 99.9% interval
// (kLookConfidence, 0.05% in each tail): over up to five looks the chance that
// a patch whose true overhead is on one side of the limit is called for the
// other stays below 0.25% even at the limit itself, and far lower away from it.
//
// Thread-safety: pure functions on values.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "metrics/stats.h"

namespace patchlab::metrics {

enum class OverheadOutcome { kWithin, kAbove, kNoisy };
std::string_view OverheadOutcomeName(OverheadOutcome o);  // "within" "above" "noisy"
Result<OverheadOutcome> ParseOverheadOutcome(std::string_view name);

// Which part of the figure a policy holds to its limit.
enum class OverheadJudgedOn {
  kInterval,    // the default: within / above / noisy as above
  kUpperBound,  // strict: within only when the interval's high end is below; else above
  kMedian,      // the point estimate alone (never noisy; kept for old policy files)
};
std::string_view OverheadJudgedOnName(OverheadJudgedOn j);  // "interval" "upper-bound" "median"

// The confidence of every interval the lab computes for a CPU overhead.
inline constexpr double kLookConfidence = 0.999;
// An interval must cover at least this much to resolve anything: the full
// range of a handful of pairs is not an interval (HodgesLehmannOverheadPct).
inline constexpr double kMinCoverage = 0.95;

// Judges `e` against `limit_pct` (the overhead must be below it). An interval
// whose coverage is known and below kMinCoverage is noisy under kInterval and
// above under kUpperBound.
OverheadOutcome JudgeOverhead(const Estimate& e, double limit_pct, OverheadJudgedOn on);

// The rule in words, for reports and reasons: "below 2.00% (99.9% interval
// entirely below: within; entirely at or above: above; else noisy)".
std::string DescribeOverheadRule(double limit_pct, OverheadJudgedOn on);

// The limit a cell is judged against: the policy's, tightened (never
// loosened) by the scenario's own `limits.cpu_overhead_pct` when it sets one.
double EffectiveCpuLimit(double policy_limit_pct, std::optional<double> scenario_limit_pct);

// When to stop measuring window pairs.
struct StoppingRule {
  double limit_pct = 2.0;
  OverheadJudgedOn judged_on = OverheadJudgedOn::kInterval;
  size_t min_pairs = 12;  // the first look (a 99.9% interval needs at least 11 pairs)
  size_t step = 4;        // pairs measured between looks
  size_t max_pairs = 28;  // the budget: at most (max - min) / step + 1 = 5 looks
};

struct StoppingDecision {
  bool measure_more = false;  // true: measure `step` more pairs and ask again
  OverheadOutcome outcome = OverheadOutcome::kNoisy;  // meaningful when !measure_more
  std::optional<Estimate> estimate;                   // from the pairs so far
};

// Decides after `unpatched`/`patched` pairs (equal lengths, costs per unit of
// work): measure more while the 99.9% interval straddles the limit (or fewer
// than min_pairs were measured) and the budget lasts; `budget_left` false (the
// workload or the cell's time is running out) ends it early. The outcome is
// always JudgeOverhead(estimate, limit, judged_on): a function of the figure
// alone, as the gate sees it. No pairs, or a cost <= 0, give noisy with no
// estimate.
StoppingDecision DecideStopping(const std::vector<double>& unpatched,
                                const std::vector<double>& patched, const StoppingRule& rule,
                                bool budget_left = true);

}  // namespace patchlab::metrics

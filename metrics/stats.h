// Statistics that turn raw samples into the figures the database keeps:
// medians, distribution-free confidence intervals for a median, and the CPU
// overhead of patched against unpatched measurement windows with its interval.
//
// Every function is pure and deterministic (the bootstrap uses a fixed seed), so
// the same samples always give the same figures. Thread-safety: all functions are
// safe to call from any thread.
#pragma once

#include <cstddef>
#include <optional>
#include <vector>

namespace patchlab::metrics {

// A point estimate with a two-sided confidence interval, low <= value <= high.
struct Estimate {
  double value = 0;
  double low = 0;
  double high = 0;
  size_t samples = 0;  // how many observations went into it
  // The probability that [low, high] covers the true value, when the method
  // knows it (the signed-rank interval); 0 when unknown. Fewer observations
  // than a method needs give a full-range interval with coverage below the
  // one asked for: a judge must not take such an interval as resolved.
  double coverage = 0;
};

// The median of `samples` (the mean of the middle two for an even count).
// Returns nullopt for an empty input. NaN and infinite samples abort (a bug upstream).
std::optional<double> Median(std::vector<double> samples);

// The `q`-quantile (0..1) by linear interpolation; nullopt for an empty input.
std::optional<double> Quantile(std::vector<double> samples, double q);

// The median with an order-statistic (binomial, distribution-free) interval of
// at least `confidence` coverage. With too few samples for that coverage
// (fewer than 6 at 95%) the interval is the sample's full range.
// nullopt for an empty input.
std::optional<Estimate> MedianWithInterval(std::vector<double> samples, double confidence = 0.95);

// CPU overhead in percent of paired windows: window i of `unpatched` and of
// `patched` measured back to back under the same load, each a CPU cost per unit
// of work (e.g. CPU-µs per operation). Per pair 100 * (patched/unpatched - 1);
// the figure is their median with an order-statistic interval.
// nullopt when the vectors differ in length, are empty, or a baseline is <= 0.
std::optional<Estimate> PairedOverheadPct(const std::vector<double>& unpatched,
                                          const std::vector<double>& patched,
                                          double confidence = 0.95);

// CPU overhead in percent of paired windows, robust at small n: the
// Hodges-Lehmann estimate of the per-pair log ratio ln(patched/unpatched)
// (the median of its Walsh averages) with the distribution-free interval of
// Wilcoxon's signed-rank test (the paired form of the Mann-Whitney interval),
// both mapped back to percent (100 * (e^x - 1)). Assumes only that the log
// ratios are symmetric about their centre; slow drift that both windows of a
// pair share cancels. `coverage` is the exact coverage of the interval: at
// least `confidence` from 6 pairs on at 95% (9 at 99.5%); with fewer pairs
// the interval is the full range and `coverage` says how little it covers.
// nullopt when the vectors differ in length, are empty, or a cost is <= 0.
std::optional<Estimate> HodgesLehmannOverheadPct(const std::vector<double>& unpatched,
                                                 const std::vector<double>& patched,
                                                 double confidence = 0.95);

// P(T <= k) for Wilcoxon's signed-rank statistic T over n pairs under the
// null hypothesis (exact, by counting rank subsets). k may exceed the maximum.
double SignedRankCdf(size_t n, size_t k);

// CPU overhead in percent of unpaired windows: 100 * (median(patched) /
// median(unpatched) - 1) with a percentile-bootstrap interval (fixed seed,
// `resamples` draws). nullopt when either side is empty or the unpatched median is <= 0.
std::optional<Estimate> OverheadPct(const std::vector<double>& unpatched,
                                    const std::vector<double>& patched, double confidence = 0.95,
                                    int resamples = 2000);

}  // namespace patchlab::metrics

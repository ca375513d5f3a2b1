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

// CPU overhead in percent of unpaired windows: 100 * (median(patched) /
// median(unpatched) - 1) with a percentile-bootstrap interval (fixed seed,
// `resamples` draws). nullopt when either side is empty or the unpatched median is <= 0.
std::optional<Estimate> OverheadPct(const std::vector<double>& unpatched,
                                    const std::vector<double>& patched, double confidence = 0.95,
                                    int resamples = 2000);

}  // namespace patchlab::metrics

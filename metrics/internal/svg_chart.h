// Inline SVG charts for the HTML report: no script, no external font or file,
// every label escaped. Private to metrics/.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace patchlab::metrics::internal {

struct ChartRow {
  std::string label;
  std::optional<double> value;  // nullopt: drawn as "n/a"
  std::optional<double> low;    // with high: a whisker for the interval
  std::optional<double> high;
  bool bad = false;  // drawn in the failure colour
};

// One row per item: a bar from 0 (or a dot with whiskers when the row has an
// interval), a dashed line at `limit` when given, an axis in `unit`.
std::string HorizontalChart(const std::string& title, const std::vector<ChartRow>& rows,
                            const std::string& unit, std::optional<double> limit);

// A histogram of `samples` in `bins` equal bins, with a dashed line at `limit`.
std::string Histogram(const std::string& title, const std::vector<double>& samples, int bins,
                      const std::string& unit, std::optional<double> limit);

}  // namespace patchlab::metrics::internal

// Nightly regression detection: compares the cells of one run with the same
// cells (scenario, patch, image, CPU, workload) in a baseline run.
//
// A regression is, per cell measured in both runs (infra errors excluded):
//   new-crash                a crash kind seen more often than in the baseline
//   new-semantic-divergence  the semantic check passed before and fails now, or
//                            an undeclared finding the baseline did not have
//   stopped-applying         applied in the baseline, refused or rolled back now
//   overhead-grew            CPU overhead interval entirely above the baseline's
//                            (new low > old high): growth beyond the noise
//   verdict-worse            passed before, fails now, for any other reason
// Cells measured in only one of the runs, or lost to infra errors, are notes:
// they are reported but are not regressions.
//
// Thread-safety: as the CompatDb given.
#pragma once

#include <string>
#include <vector>

#include "base/error.h"
#include "metrics/cell_result.h"
#include "metrics/compat_db.h"

namespace patchlab::metrics {

struct Regression {
  CellKey cell;
  std::string kind;     // see above
  std::string message;  // "segfault 0 -> 2", "CPU overhead 0.4% [0.1, 0.8] -> 3.1% [2.6, 3.5]"
};

struct RegressionReport {
  int64_t baseline_run = 0;
  int64_t run = 0;
  size_t cells_compared = 0;
  std::vector<Regression> regressions;
  std::vector<std::string> notes;
  // One line per regression and note, after a summary line.
  std::string Explain() const;
};

// Compares `run` against `baseline`. Fails (kNotFound) when either run is absent.
Result<RegressionReport> FindRegressions(CompatDb& db, int64_t baseline, int64_t run);

}  // namespace patchlab::metrics

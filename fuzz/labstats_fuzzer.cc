// The line a scenario's target writes for the lab (scenarios/common/labstats.h),
// read by the runner from the guest (harness/lab/internal/runner_figures.h). A
// target is the program under test: its file may hold anything. A line that
// reads must read the same once written back in labstats' own format.
#include <string>

#include "fmt/format.h"
#include "fuzz/fuzz_target.h"
#include "harness/lab/internal/runner_figures.h"

PATCHLAB_FUZZ_TARGET(labstats) {
  using patchlab::harness::internal::ParseStatsLine;
  auto sample = ParseStatsLine(patchlab::fuzz::AsText(data, size));
  if (!sample) return 0;
  const std::string line = fmt::format("ops={} errors={} cpu_ns={} wall_ns={}\n", sample->ops,
                                       sample->errors, sample->cpu_ns, sample->wall_ns);
  auto again = ParseStatsLine(line);
  FUZZ_CHECK(again.has_value());
  FUZZ_CHECK(again->ops == sample->ops && again->errors == sample->errors &&
             again->cpu_ns == sample->cpu_ns && again->wall_ns == sample->wall_ns);
  return 0;
}

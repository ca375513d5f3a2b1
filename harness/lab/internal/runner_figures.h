// What the runner observed in one cell, and the pure functions that turn it
// into the cell's figures, verdict and reasons (metrics::CellResult), and into
// "did it meet the scenario's expect:".
//
// Kept free of VMs and processes so every rule can be unit-tested on samples.
// Thread-safety: pure functions on values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "harness/lab/scenario.h"
#include "harness/vm/crash_classifier.h"
#include "metrics/cell_result.h"

namespace patchlab::harness::internal {

// One line of a target's PATCHLAB_STATS file (scenarios/common/labstats.h):
// "ops=N errors=N cpu_ns=N wall_ns=N".
struct StatsSample {
  uint64_t ops = 0;
  uint64_t errors = 0;
  uint64_t cpu_ns = 0;   // the process's CPU time, all threads
  uint64_t wall_ns = 0;  // CLOCK_MONOTONIC in the guest
};
// Fails (kParse, quoting the line) on anything that is not such a line.
Result<StatsSample> ParseStatsLine(std::string_view line);

// A measured window: the target's counters at its start and end.
struct Window {
  bool patched = false;
  StatsSample begin;
  StatsSample end;
};

// One call of the patch core in the guest.
struct PatchCall {
  enum class Op { kApply, kRevert, kVerify };
  Op op = Op::kApply;
  int exit_code = 0;  // hotpatch's: 0 done, 2 usage, 3 refused, 4 rolled back, 5 target gone
  std::optional<double> pause_us;  // from apply --json
  std::string message;             // stderr, or the reason it gave
};

struct CellObservations {
  std::optional<std::string> infra_error;  // set: nothing else counts
  std::vector<Window> windows;             // in the order measured
  std::vector<PatchCall> calls;            // in the order made
  std::vector<Crash> crashes;              // from every source (crash_classifier.h)
  // Other reasons the cell failed (the workload ended before the measurement,
  // made no progress, outlived its timeout): each makes the verdict fail.
  std::vector<std::string> problems;
  std::optional<StatsSample> last_stats;   // the target's last report
  std::optional<uint64_t> pss_before_kib;  // the target, just before the first apply
  std::optional<uint64_t> pss_after_kib;   // the target, after the first apply
  metrics::SemanticVerdict semantic = metrics::SemanticVerdict::kNotRun;
};

// Fills verdict, reasons, apply result, crashes, pauses, CPU overhead (paired
// windows: CPU-ns per operation, patched against the unpatched window before
// it), memory overhead and semantic verdict of `cell` from `obs`, judged
// against `limits`. Sets `overhead_flagged` when the whole CPU overhead
// interval lies above the limit. Key, run id and artefacts are the caller's.
void ComputeFigures(const CellObservations& obs, const LimitsSpec& limits,
                    metrics::CellResult& cell, bool& overhead_flagged);

// Whether `cell` met `expect`; when it did not, `why_not` says why (one line
// per unmet clause). Infra errors never meet an expectation.
bool MetExpectation(const metrics::CellResult& cell, bool overhead_flagged,
                    const ExpectSpec& expect, std::vector<std::string>& why_not);

}  // namespace patchlab::harness::internal

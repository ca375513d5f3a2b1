// What the runner observed in one cell, and the pure functions that turn it
// into the cell's figures, verdict and reasons (metrics::CellResult), and into
// "did it meet the scenario's expect:".
//
// Kept free of VMs and processes so every rule can be unit-tested on samples.
// Thread-safety: pure functions on values.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "harness/lab/scenario.h"
#include "harness/vm/crash_classifier.h"
#include "metrics/cell_result.h"
#include "metrics/policy.h"
#include "metrics/window_sample.h"

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

// `patch.processes: all`: what the system-wide applies reached.
struct SystemWideObservations {
  size_t most_patched = 0;                 // the most processes one apply patched
  std::map<pid_t, std::string> unpatched;  // mapped the module, patch live, ran without it
  std::vector<double> wall_us;             // each apply's wall time (hotpatch's wall_us)
};

struct CellObservations {
  std::optional<std::string> infra_error;  // set: nothing else counts
  std::vector<Window> windows;             // in the order measured
  // The clock the target's cpu_ns were read on (the machine's: instructions
  // under an icount guest, CPU time otherwise), and the lab host's load while
  // the windows ran.
  metrics::CpuClock clock = metrics::CpuClock::kUnknown;
  std::optional<metrics::HostLoad> host_load;
  std::vector<PatchCall> calls;  // in the order made
  std::vector<Crash> crashes;    // from every source (crash_classifier.h)
  // Other reasons the cell failed (the workload ended before the measurement,
  // made no progress, outlived its timeout): each makes the verdict fail.
  std::vector<std::string> problems;
  std::optional<StatsSample> last_stats;   // the target's last report
  std::optional<uint64_t> pss_before_kib;  // the target, just before the first apply
  std::optional<uint64_t> pss_after_kib;   // the target, after the first apply
  std::optional<double> mapped_kib;        // hotpatch apply --json: what the patch mapped
  std::optional<double> island_kib;        // of which island (trampoline) pages
  metrics::SemanticVerdict semantic = metrics::SemanticVerdict::kNotRun;
  // The same target and patch measured natively on the lab host (CPU time,
  // the same windows and statistics: NativeReferences) beside a VM's figure,
  // or why there is none (empty when none was asked for).
  std::optional<metrics::Estimate> native_reference;
  std::string native_reference_note;
  // A target the lab did not build: what ran ("nginx-light 1.22.1-9", or
  // "/usr/local/bin/x build-id 3f2a..."), the load generator's latency
  // percentiles per window (name -> ms, unpatched and patched), and outputs
  // worth keeping (a failed check's): file name -> content, for the artefacts.
  std::string application;
  std::map<std::string, std::vector<double>> latency_unpatched_ms;
  std::map<std::string, std::vector<double>> latency_patched_ms;
  std::map<std::string, std::string> artefacts;
  std::optional<SystemWideObservations> system_wide;  // set for patch.processes: all
};

// What a cell is judged against: the policy in force, tightened by the
// scenario's own limits, and when to stop measuring window pairs.
struct CellRules {
  metrics::StoppingRule cpu;  // limit (effective), way of judging, pairs
  std::optional<double> scenario_cpu_limit_pct;
  double mem_overhead_kib = 15.0 * 1024;
  double pause_us = 500000;
};
// The rules for `scenario` under `policy`: the CPU limit is the policy's unless
// the scenario's is lower; memory and pause limits likewise.
CellRules RulesFor(const Scenario& scenario, const metrics::Policy& policy);

// The window pairs measured so far as the statistics see them: per pair, the
// cost per operation with the patch off and on (metrics::PairAdjacentWindows).
metrics::PairedCosts PairedWindowCosts(const std::vector<Window>& windows);

// Fills verdict, reasons, apply result, crashes, pauses, CPU overhead (paired
// windows, Hodges-Lehmann with its 99.9% signed-rank interval, judged by
// metrics::JudgeOverhead: within, above or noisy; a noisy figure never fails
// the cell; with a native reference the cross-check of metrics/cpu_cross_check.h
// decides which figure is judged and which is kept beside it), memory figures and semantic verdict
// of `cell` from `obs`, judged against `rules`. Key, run id and artefacts are the caller's.
void ComputeFigures(const CellObservations& obs, const CellRules& rules, metrics::CellResult& cell);

// Whether `cell` met `expect`; when it did not, `why_not` says why (one line
// per unmet clause). `overhead_flagged` is met by a CPU outcome of "above"
// (and "false" by anything else). Infra errors never meet an expectation.
bool MetExpectation(const metrics::CellResult& cell, const ExpectSpec& expect,
                    std::vector<std::string>& why_not);

// Whether the cell's CPU figure was judged above its limit.
bool OverheadFlagged(const metrics::CellResult& cell);

}  // namespace patchlab::harness::internal

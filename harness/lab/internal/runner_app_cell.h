// The measured sequence of one cell whose target the lab did not build (a
// Debian package's program, a prebuilt binary), measured from outside:
//
//   push the workload's files, the package and its key (and target.binary);
//   record the application (package version via dpkg-query, or the program's
//   build-id); start the service and wait for its readiness probe; then
//   measure window pairs in randomized ABBA blocks until the CPU figure is
//   resolved or the budget (measure.max_alternations, workload.duration and
//   the cell's timeout, on the host's clock) is spent: the labstats path's
//   own loop (abba_measurement.h). A
//   window is one run of the load generator (or `measure.window` of checks)
//   while the check runs again and again; its work is the generator's count
//   (workload.load.work) or the checks that passed, its CPU cost the CPU time
//   of every process running target.program (master and workers) from /proc.
//   The patch is applied to, reverted from and verified in every such process.
//   Finally the service is stopped (its stop command, or SIGTERM to each).
//
// Crashes: any process of the target that ends while measured (a worker
// respawned by its master is one), kernel log lines, the machine's own. A
// check that exits non-zero or prints unexpected output is a wrong result, its
// output kept. Bad input found only in the guest (a program or package the
// image lacks, a service never ready, a generator whose output never matches)
// is an infra-error naming scenario FILE:LINE:COL and the field: it says
// nothing about the patch.
//
// The windows land in CellObservations::windows as cumulative samples
// (ops = work, errors = failed checks, cpu_ns = the processes' CPU), so the
// statistics are the labstats path's own (runner_figures.h).
//
// Thread-safety: one call per CellGuest.
#pragma once

#include <atomic>

#include "harness/lab/internal/runner_cell.h"

namespace patchlab::harness::internal {

// REQUIRES: !plan.scenario->target.Built() and plan.workload->service.
CellObservations RunAppCellSequence(CellGuest& guest, const CellPlan& plan,
                                    const std::atomic<bool>* cancel);

// A load/check/service argv with "{threads}", "{duration_ms}", "{window_ms}",
// "{window_s}" (whole seconds, at least 1) and "{cell}" (the guest folder the
// workload's files are in) replaced.
std::vector<std::string> AppArgv(const std::vector<std::string>& argv, const WorkloadSpec& workload,
                                 std::chrono::milliseconds window, const std::string& cell_dir);

}  // namespace patchlab::harness::internal

// The measured sequence of one cell on one machine: push the target, the
// package and the lab's public key; start the workload; warm up; measure
// window pairs in randomized ABBA order (each pair an unpatched and a patched
// window back to back, in either order; the patch applied and reverted live
// between them; `apply.repeat` extra cycles after the first apply) until the
// CPU figure is resolved against its limit or the budget is spent
// (metrics::DecideStopping); verify; stop the workload (SIGTERM: it must exit
// cleanly); gather crashes from the workload's end, the kernel log and the
// machine. Windows are measured on the guest's own clock (the target's
// wall_ns), so under an instruction-counting guest each is a fixed amount of
// guest work whatever the host's load.
//
// Thread-safety: one call per CellGuest; distinct cells may run concurrently.
#pragma once

#include <atomic>
#include <filesystem>
#include <string>

#include "harness/lab/internal/runner_build.h"
#include "harness/lab/internal/runner_figures.h"
#include "harness/lab/internal/runner_guest.h"
#include "harness/lab/scenario.h"

namespace patchlab::harness::internal {

struct CellPlan {
  const Scenario* scenario = nullptr;
  const BuiltScenario* built = nullptr;
  const BuiltPatch* patch = nullptr;
  const WorkloadSpec* workload = nullptr;
  std::filesystem::path public_key;  // the lab's; a prebuilt patch carries its own
  CellRules rules;                   // when the CPU figure is resolved (RulesFor)
  uint64_t seed = 0;                 // orders the ABBA blocks; the same seed, the same order
  std::string image;                 // the image name, for messages
};

// Runs the sequence. Never fails as a whole: a machine failure (kInfra from
// the guest) becomes obs.infra_error, everything else becomes figures,
// crashes and problems in the returned observations. `cancel` (may be null)
// stops early between steps; the cell is then an infra error ("cancelled").
CellObservations RunCellSequence(CellGuest& guest, const CellPlan& plan,
                                 const std::atomic<bool>* cancel);

// The workload's argv in the guest: argv[0] equal to the target program's
// name becomes `guest_program`; "{threads}" and "{duration_ms}" are replaced.
std::vector<std::string> WorkloadArgv(const WorkloadSpec& workload, const std::string& program,
                                      const std::string& guest_program);

}  // namespace patchlab::harness::internal

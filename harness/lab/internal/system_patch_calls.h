// The patch core's system-wide calls as a real-application cell makes them
// for `patch.processes: all` (scenarios/README.md): `hotpatch apply|revert|
// verify|status --system --json`, run through the machine's ordinary exec,
// and their one summary read per process.
//
// hotpatch's contract (docs/hotpatch.md): exit 0 every process done, 3 some
// refused (nothing changed in them; the rest done), 4 some rolled back or a
// verify mismatch; --json prints {"patch_id", "processes": [{"pid", "comm",
// "result", "reason", "pause_us"}], "applied", "refused", "uninspected",
// "wall_us"}; `status --system --json` lists, per system-wide patch, the
// processes that map its module without running it ("unpatched").
//
// Thread-safety: as the CellGuest given (one cell's thread).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "harness/lab/internal/runner_figures.h"
#include "harness/lab/internal/runner_guest.h"

namespace patchlab::harness::internal {

// `hotpatch apply --system --pubkey PUBKEY --timeout MS PACKAGE`.
Result<HotpatchResult> HotpatchApplySystem(CellGuest& guest, const std::string& package,
                                           const std::string& pubkey,
                                           std::chrono::milliseconds timeout);
// `hotpatch revert --system PATCH_ID`.
Result<HotpatchResult> HotpatchRevertSystem(CellGuest& guest, const std::string& patch_id);
// `hotpatch verify --system`.
Result<HotpatchResult> HotpatchVerifySystem(CellGuest& guest);
// `hotpatch status --system`.
Result<HotpatchResult> HotpatchStatusSystem(CellGuest& guest);

// One process of a system-wide answer.
struct SystemProcess {
  pid_t pid = 0;
  std::string comm;
  std::string result;  // applied, reverted, ok, refused, rolled-back, vanished, mismatch, ...
  std::string reason;
  std::optional<double> pause_us;
  // What an apply that changed the process mapped into it (hotpatch's
  // mapped_bytes / island_bytes); unset otherwise.
  std::optional<double> mapped_bytes;
  std::optional<double> island_bytes;
  int ExitCode() const;  // hotpatch's per-pid code for `result`: 0, 3, 4, 5, or -1
};

struct SystemAnswer {
  int exit_code = -1;  // hotpatch's own; -1 when it died
  // Every process it named, those it could not inspect included (as refused).
  std::vector<SystemProcess> processes;
  std::optional<double> wall_us;
  // Why there is no per-process answer (usage, a bad package, no process maps
  // the module): hotpatch's stderr; empty when `processes` says it.
  std::string message;
};
// Reads `r` (the JSON on hotpatch's stdout).
SystemAnswer ReadSystemAnswer(const HotpatchResult& r);

// From `status --system --json`: the processes that map the module of
// system-wide patch `patch_id` and do not run it.
std::vector<SystemProcess> UnpatchedBy(const HotpatchResult& status, const std::string& patch_id);

}  // namespace patchlab::harness::internal

// SystemPatcher: one patch for every process that maps its module, the
// commands `hotpatch apply|revert|status|verify|recover --system`.
//
// Processes are found by the build-id of the file they map (ProcessScan),
// not by its path. Each gets the full per-process guarantees of Patcher: its
// own lock, journal, consistency check and rollback. They are handled
// concurrently, `jobs` at a time, each wholly on one thread (ptrace belongs
// to the thread that attached), sharing the decoded package and library
// files. A process that cannot be handled is reported with its reason and
// the others go on; none is skipped silently.
//
// Processes forked from a patched one inherit its patched code; Patcher
// adopts their inherited record first (Patcher::AdoptInherited).
//
// Thread-safety: each function runs its own worker threads and returns when
// they are done; call it from one thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "patchcore/patch_package.h"
#include "patchcore/patcher.h"
#include "patchcore/process_scan.h"
#include "patchcore/system_record.h"

namespace patchlab::patchcore {

enum class Outcome {
  kApplied,     // runs the patch (also: it did already)
  kReverted,    // the patch is gone
  kVerified,    // every recorded byte is in place
  kRecovered,   // an interrupted operation was finished
  kRefused,     // nothing changed in it, with the reason
  kRolledBack,  // changed part-way and fully undone (also: reverted by --all-or-nothing)
  kVanished,    // it exited (or its pid was reused) meanwhile
  kMismatch,    // verify found bytes that differ from the record
};
// "applied", "reverted", "ok", "recovered", "refused", "rolled-back", "vanished", "mismatch".
std::string_view OutcomeName(Outcome outcome);

struct ProcessOutcome {
  pid_t pid = 0;
  std::string comm;
  Outcome result = Outcome::kRefused;
  std::string reason;  // why (refused, rolled back, vanished), or a note on success
  std::chrono::microseconds pause{0};
  std::chrono::microseconds staging{0};
  int retries = 0;
  // What this apply mapped into the process (ApplyReport's mapped_bytes and
  // island_bytes): 0 when it changed nothing (inherited, already live).
  uint64_t mapped_bytes = 0;
  uint64_t island_bytes = 0;
  pid_t inherited_from = 0;  // its record was adopted from this process first
  bool changed = false;      // this run changed it (not: already applied)
  bool followed = false;     // found by --follow, after the first round
};

struct UninspectedProcess {
  pid_t pid = 0;
  std::string comm;
  std::string reason;
};

struct SystemReport {
  std::string patch_id;
  std::string module;  // file name and build-id of the module (apply, revert)
  std::string build_id;
  std::vector<ProcessOutcome> processes;  // in the order handled, pid order per round
  // Processes whose mappings could not be read: whether they map the module
  // is unknown. They count as refused.
  std::vector<UninspectedProcess> uninspected;
  size_t scanned = 0;  // processes looked at
  std::chrono::microseconds wall{0};

  int Count(Outcome outcome) const;
};

struct SystemOptions {
  ApplyOptions apply;  // key, --allow-unsigned and the per-process --timeout
  ScanFilter filter;
  int jobs = 0;                 // processes at a time; 0: one per CPU
  bool all_or_nothing = false;  // apply: revert the applied ones when any is not applied
  // apply: after the first round, keep patching processes that start (or
  // map the module) this long.
  std::chrono::milliseconds follow{0};
  // Called (on the calling thread) for each process found while following.
  std::function<void(const ProcessOutcome&)> on_followed;
};

// kRefused naming the module and build-id when no process maps it (and
// nothing was found while following) and none was left uninspected; errors
// of the package as Patcher.
Result<SystemReport> ApplySystem(const PatchPackage& package, const SystemOptions& options);
// kInvalidArgument when patch `id` is live in no process.
Result<SystemReport> RevertSystem(const std::string& id, const SystemOptions& options);
// Every recorded process, verified.
Result<SystemReport> VerifySystem(const SystemOptions& options);
// Every recorded process with an interrupted operation, recovered.
Result<SystemReport> RecoverSystem(const SystemOptions& options);

struct ProcessStack {
  pid_t pid = 0;
  std::string comm;
  std::vector<std::string> patches;  // bottom to top
  bool interrupted = false;          // awaits `recover`
  pid_t inherited_from = 0;          // not recorded: inherited by fork from this process
  std::string note;                  // e.g. why an inherited stack matches no record
};

struct SystemPatchStatus {
  SystemRecord record;
  int running = 0;                     // processes mapping the module that run it
  std::vector<ProcessInfo> unpatched;  // ... and those that do not (started later, refused)
};

struct SystemStatus {
  std::vector<ProcessStack> processes;  // with a stack, recorded or inherited
  std::vector<SystemPatchStatus> patches;
  std::vector<UninspectedProcess> uninspected;
};

Result<SystemStatus> StatusSystem(const ScanFilter& filter);

}  // namespace patchlab::patchcore

// What the --system commands share: finding the processes that map a
// module, opening one for work (checking that its pid still names the
// process that was found), and turning a per-process error into an outcome.
//
// Thread-safety: FindModuleUsers on one thread; the rest from any thread.
#pragma once

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"
#include "patchcore/elf_cache.h"
#include "patchcore/patcher.h"
#include "patchcore/process_scan.h"
#include "patchcore/system_patcher.h"

namespace patchlab::patchcore::internal {

struct ModuleUsers {
  std::vector<ProcessInfo> users;  // pid order
  std::vector<UninspectedProcess> uninspected;
  // Listed but exited since (zombies): they run no code, so nothing of
  // theirs can be patched or left unpatched; reported as vanished.
  std::vector<UninspectedProcess> ended;
  size_t scanned = 0;
};

// The processes among `candidates` that map a file with `build_id` as code.
ModuleUsers FindModuleUsers(const std::string& build_id, const std::vector<ProcessInfo>& candidates,
                            ElfCache& files);

// The Patcher of `p`, or the outcome that says why there is none: a known
// blocker (zombie; another tracer, when the work needs ptrace), a vanished or
// recycled pid, no access.
Result<Patcher> OpenFound(const ProcessInfo& p, ProcessOutcome& out, bool needs_ptrace = true);

// Whether `p` may run patch `id`: its record says so, or it inherited it by
// fork (read only: nothing is attached or saved).
bool MayRunPatch(const ProcessInfo& p, const std::string& id);

// `out` completed for a per-process failure: vanished (kTargetGone, or any
// failure of a process that has ended meanwhile),
// rolled-back (kRolledBack and the failures that happen part-way), else
// refused; an access error gets the reason why (AttachBlockerAfter).
void SetFailure(const Error& e, ProcessOutcome& out);

}  // namespace patchlab::patchcore::internal

// UnmapWhenUnused: frees patch code (objects, island pages) that no jump
// leads to any more, once no thread runs in or returns into it.
//
// Thread-safety: ptrace; from the thread that calls it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <vector>

#include "base/error.h"
#include "patchcore/process_maps.h"
#include "patchcore/process_memory.h"
#include "patchcore/remote_ptr.h"

namespace patchlab::patchcore::internal {

// Stops the process at a moment when no thread is inside `ranges` (parking
// as StopWorld does, spin traps recorded in `park_journal`) and unmaps them
// with injected munmap, run from the stub of one of `islands` where one is
// mapped (remote_syscall.h). REQUIRES: the caller has already redirected
// every jump away from them. Succeeds at once when `ranges` is empty;
// kRefused when a thread stays inside past `timeout`.
Status UnmapWhenUnused(pid_t pid, const ProcessMemory& memory, const ProcessMaps& maps,
                       const std::vector<RemoteRange>& ranges,
                       const std::vector<RemotePtr>& islands, std::chrono::milliseconds timeout,
                       const std::filesystem::path& park_journal);

}  // namespace patchlab::patchcore::internal

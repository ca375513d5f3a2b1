// InheritedState: a process forked from a patched one runs the patched code
// too (fork copies the jumps, the island pages and the patch objects, at the
// same addresses), but no state is recorded for it. This finds the record it
// inherited, so that the process can be adopted: verified, recorded under
// its own pid, and then reverted, verified or patched further like any other.
//
// Candidates are the state of its ancestors (parent first) and of the process
// named in the header of each island page it maps (the process that made
// it). A candidate is taken only when every byte it records (entry jumps,
// slots, island markers, patch code) is what this process holds.
//
// Thread-safety: reads files and another process's memory; any thread.
#pragma once

#include <sys/types.h>

#include <optional>

#include "base/error.h"
#include "patchcore/patch_state.h"
#include "patchcore/process_maps.h"
#include "patchcore/process_memory.h"

namespace patchlab::patchcore::internal {

struct InheritedState {
  ProcessState state;  // already rewritten for the inheriting process
  pid_t origin = 0;    // whose record it is
};

// nullopt when the process shows no sign of inherited patches (no island
// page). kRefused naming the origin when it maps island pages that match no
// record (the origin changed its stack since the fork, or its record is gone).
Result<std::optional<InheritedState>> FindInheritedState(pid_t pid, uint64_t start_time,
                                                         const ProcessMaps& maps,
                                                         const ProcessMemory& memory);

// The differences between `state` and what the process holds, in words; empty
// when every recorded byte is in place (what `verify` checks).
std::vector<std::string> StateMismatches(const ProcessState& state, const ProcessMemory& memory,
                                         int* checked);

}  // namespace patchlab::patchcore::internal

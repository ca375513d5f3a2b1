// RevertPlan: what reverting one patch (or all) changes in a process,
// decided from the recorded stack alone: the ids that go, every slot and
// entry write, the mappings to free and the state to commit.
//
// Thread-safety: value types and pure functions.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "patchcore/journal.h"
#include "patchcore/patch_state.h"
#include "patchcore/stack_check.h"

namespace patchlab::patchcore::internal {

struct RevertPlan {
  std::vector<std::string> reverted;  // ids, top first; empty: nothing to do
  std::vector<JournalWrite> writes;   // slots and entries, in order
  std::vector<RemoteRange> to_unmap;  // the patches' objects and unused island pages
  std::vector<GuardedRange> guarded;  // the same, named: no thread may be in them when unmapped
  ProcessState next;                  // the state to commit
};

// The plan to revert `id`, or every patch when nullopt. kInvalidArgument when
// `id` is not live; kRefused when a live patch that stays depends on one that
// goes (naming both).
Result<RevertPlan> PlanRevert(const ProcessState& state, const std::optional<std::string>& id,
                              pid_t pid);

}  // namespace patchlab::patchcore::internal

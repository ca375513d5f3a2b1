#include "patchcore/internal/staged_object.h"

#include <sys/mman.h>

#include <algorithm>
#include <utility>

#include "base/log.h"
#include "patchcore/internal/rollback_guard.h"
#include "patchcore/island.h"
#include "patchcore/remote_syscall.h"
#include "patchcore/tracee.h"

namespace patchlab::patchcore::internal {
namespace {

// The island pages this apply does not make (their stubs can run the calls).
std::vector<RemotePtr> ExistingIslands(const ApplyPlan& plan) {
  std::vector<RemotePtr> out;
  for (const IslandState& is : plan.next.islands) {
    if (std::find(plan.new_islands.begin(), plan.new_islands.end(), is.addr) ==
        plan.new_islands.end()) {
      out.push_back(is.addr);
    }
  }
  return out;
}

// Maps the new island pages first (executable at once, written through
// /proc/PID/mem: one injected call each, and their stub runs the rest), then
// the patch object (filled and protected), then writes the fresh slots, and
// gives the injection thread its registers back.
Status MapAndFill(const ApplyPlan& plan, const ProcessMemory& memory, RemoteSyscall& sys,
                  RollbackGuard& undo) {
  sys.UseStubOf(ExistingIslands(plan));
  for (RemotePtr page : plan.new_islands) {
    if (auto st =
            undo.Map({page, page + static_cast<int64_t>(kIslandPageSize)}, PROT_READ | PROT_EXEC);
        !st) {
      return st;
    }
    // The page is new: nothing refers to it and no thread runs in it.
    if (auto st = memory.Write(page, plan.island_header); !st) return st;
    sys.UseStubOf({page});
  }
  // Mapped read-only and written through /proc/PID/mem, which writes the
  // read-only pages of a traced process (as for the island pages): only the
  // pages that need more than reading then cost an injected mprotect (two of
  // four for a typical object), and every injected call is two round trips
  // through the target's scheduling.
  if (auto st = undo.Map(plan.mapping, PROT_READ); !st) return st;
  FaultPoint("mid-staging");  // a thread waits at a stub with the patcher's registers
  if (auto st = memory.Write(plan.mapping.start, plan.image); !st) return st;
  for (const PageProtection& p : plan.protections) {
    if (p.prot == PROT_READ) continue;
    if (auto st = sys.Mprotect(plan.mapping.start + static_cast<int64_t>(p.offset), p.size, p.prot);
        !st) {
      return st;
    }
  }
  for (const JournalWrite& w : plan.slot_writes) {
    // SAFETY: the slot is one no jump leads to yet (a new island page, or
    // the next unused slot of an existing one), so no thread, running or
    // held, can execute these bytes; the rest of the page is left as it is.
    if (auto st = undo.Write(w); !st) return st;
  }
  return sys.Restore();
}

}  // namespace

Result<StagedObject> StagedObject::Stage(pid_t pid, const ApplyPlan& plan,
                                         const ProcessMemory& memory,
                                         const InjectionSite& injection) {
  StagedObject staged(pid, plan, memory, injection);
  auto tracee = Tracee::AttachOne(pid);
  if (!tracee) return std::unexpected(std::move(tracee.error()));
  {
    RemoteSyscall sys(*tracee, tracee->threads().front(), memory, injection);
    RollbackGuard undo(memory, &sys);
    if (auto st = MapAndFill(plan, memory, sys, undo); !st) {
      if (auto undone = undo.Undo(); !undone) {
        return std::unexpected(std::move(st.error()).AddContext(undone.error().ToString()));
      }
      return std::unexpected(st.error());
    }
    undo.Commit();
  }
  auto detached = tracee->Detach();
  staged.held_ = tracee->held();
  staged.staged_ = true;
  if (!detached) return std::unexpected(std::move(detached.error()));
  return staged;
}

StagedObject::StagedObject(StagedObject&& other) noexcept
    : pid_(other.pid_),
      plan_(other.plan_),
      memory_(other.memory_),
      injection_(other.injection_),
      staged_(std::exchange(other.staged_, false)),
      held_(other.held_) {}

StagedObject::~StagedObject() {
  if (auto st = Unstage(); !st) {
    Log("patchcore")
        ->error("pid {}: the staged patch object stays mapped: {}", pid_, st.error().ToString());
  }
}

bool StagedObject::Intact() const {
  auto head = memory_->Read(plan_->mapping.start, std::min<size_t>(64, plan_->image.size()));
  if (!head || !std::equal(head->begin(), head->end(), plan_->image.begin())) return false;
  for (RemotePtr page : plan_->new_islands) {
    auto got = memory_->Read(page, plan_->island_header.size());
    if (!got || *got != plan_->island_header) return false;
  }
  return true;
}

Status StagedObject::Unstage() {
  if (!std::exchange(staged_, false)) return {};
  auto tracee = Tracee::AttachOne(pid_);
  if (!tracee) return std::unexpected(std::move(tracee.error()));
  RemoteSyscall sys(*tracee, tracee->threads().front(), *memory_, injection_);
  std::vector<RemotePtr> islands;
  for (const IslandState& is : plan_->next.islands) islands.push_back(is.addr);
  sys.UseStubOf(islands);  // a new page's stub too: Munmap leaves it last
  for (const JournalWrite& w : plan_->slot_writes) {
    // SAFETY: still no jump leads to this slot: the switch never happened
    // (or was undone), so no thread can be executing it.
    if (auto st = memory_->Write(w.addr, w.old_bytes); !st) return st;
  }
  if (auto st = sys.Munmap(plan_->mapping.start, plan_->mapping.size()); !st) return st;
  for (RemotePtr page : plan_->new_islands) {
    if (auto st = sys.Munmap(page, kIslandPageSize); !st) return st;
  }
  if (auto st = sys.Restore(); !st) return st;
  return tracee->Detach();
}

}  // namespace patchlab::patchcore::internal

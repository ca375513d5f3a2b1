// Patcher::Revert: the patches that go stop receiving calls at once; their
// code is freed once no thread runs in it.
#include <utility>

#include "base/log.h"
#include "patchcore/internal/revert_plan.h"
#include "patchcore/internal/rollback_guard.h"
#include "patchcore/internal/stop_world.h"
#include "patchcore/internal/unmap_when_unused.h"
#include "patchcore/journal.h"
#include "patchcore/patcher.h"
#include "patchcore/process_maps.h"
#include "patchcore/process_memory.h"
#include "patchcore/remote_syscall.h"

namespace patchlab::patchcore {
namespace {

using internal::RevertPlan;

Journal RevertJournal(const RevertPlan& plan, const std::optional<std::string>& id,
                      uint64_t serial) {
  Journal journal;
  journal.op = Journal::Op::kRevert;
  journal.patch_id = id.value_or("--all");
  journal.serial = serial;
  journal.writes = plan.writes;
  journal.to_unmap = plan.to_unmap;
  journal.new_state = plan.next.ToJson();
  return journal;
}

// Every slot and entry write of the revert, with every thread held. A write
// that fails undoes the ones made before it and releases the process.
Status WriteRevert(const RevertPlan& plan, const ProcessMemory& memory, Tracee& tracee,
                   const StateStore& store, pid_t pid) {
  internal::RollbackGuard undo(memory, nullptr);
  int count = 0;
  for (const JournalWrite& w : plan.writes) {
    // SAFETY: every thread is stopped and none runs in or returns into the
    // patches being removed (stack check above). Restoring an entry puts back
    // whole original instructions; no thread can be inside them, since the
    // jump written there has been the only instruction executed at that spot.
    // Rewriting a slot's 8-byte address changes where the next call goes.
    if (auto st = undo.Write(w); !st) {
      if (auto undone = undo.Undo(); !undone) {
        Log("patchcore")->error("{}; run `hotpatch recover`", undone.error().ToString());
        return std::unexpected(std::move(st.error()).AddContext("rollback incomplete"));
      }
      (void)tracee.Detach();
      (void)RemoveJournal(store.journal_path());
      if (st.error().code() == ErrorCode::kTargetGone) return st;
      return Fail(ErrorCode::kRolledBack,
                  "revert in pid {} failed part-way and was rolled back: {}", pid,
                  st.error().ToString());
    }
    FaultPoint(fmt::format("after-write-{}", ++count));
  }
  undo.Commit();
  return {};
}

// Whether no thread runs in or returns into the reverted code, asked while
// every thread is still held after the writes. False also when the check
// failed: then the code is freed later, the careful way.
bool UnusedAtSwitch(const RevertPlan& plan, const Tracee& tracee, const ProcessMemory& memory) {
  StackChecker checker;
  auto hit = checker.Check(tracee, memory, plan.guarded);
  return hit && !*hit;
}

// Unmaps the reverted code holding one thread: no jump leads there any more
// and no thread was inside at the switch, so none can be now.
Status UnmapUnused(pid_t pid, const RevertPlan& plan, const std::vector<RemotePtr>& islands,
                   const ProcessMemory& memory, const InjectionSite& injection) {
  auto tracee = Tracee::AttachOne(pid);
  if (!tracee) return std::unexpected(std::move(tracee.error()));
  RemoteSyscall sys(*tracee, tracee->threads().front(), memory, injection);
  sys.UseStubOf(islands);  // island pages that go are unmapped last
  for (const RemoteRange& r : plan.to_unmap) {
    if (auto st = sys.Munmap(r.start, r.size()); !st) {
      Log("patchcore")->warn("pid {}: {}", pid, st.error().ToString());
    }
  }
  if (auto st = sys.Restore(); !st) return st;
  return tracee->Detach();
}

}  // namespace

Result<RevertReport> Patcher::Revert(std::optional<std::string> id,
                                     std::chrono::milliseconds timeout) {
  auto adopted = AdoptInherited();
  if (!adopted) return std::unexpected(std::move(adopted.error()));
  auto state = LoadForChange();
  if (!state) return std::unexpected(std::move(state.error()));
  auto plan = internal::PlanRevert(*state, id, pid_);
  if (!plan) return std::unexpected(std::move(plan.error()));
  RevertReport report;
  report.reverted = plan->reverted;
  report.inherited_from = *adopted;
  if (report.reverted.empty()) return report;
  auto maps = ProcessMaps::Read(pid_);
  if (!maps) return std::unexpected(std::move(maps.error()));
  auto memory = ProcessMemory::Open(pid_);
  if (!memory) return std::unexpected(std::move(memory.error()));
  auto injection = FindInjectionSite(*memory, *maps);
  if (!injection) return std::unexpected(std::move(injection.error()));

  const auto journal_path = store_.journal_path();
  if (auto st = SaveJournal(journal_path, RevertJournal(*plan, id, state->serial)); !st) {
    return std::unexpected(st.error());
  }
  // Redirecting calls away from a patch is safe whatever the threads are
  // doing; only unmapping its code must wait until no thread is inside.
  auto world = internal::StopWorld(pid_, *memory, {}, timeout);
  if (!world) {
    (void)RemoveJournal(journal_path);
    return std::unexpected(std::move(world.error()));
  }
  report.retries = world->retries;
  Tracee& tracee = world->tracee;
  if (auto st = WriteRevert(*plan, *memory, tracee, store_, pid_); !st) {
    return std::unexpected(st.error());
  }
  const bool unused = UnusedAtSwitch(*plan, tracee, *memory);
  (void)tracee.Detach();
  report.pause = tracee.held();
  std::vector<RemotePtr> islands;
  for (const IslandState& is : state->islands) islands.push_back(is.addr);
  auto freed = unused ? UnmapUnused(pid_, *plan, islands, *memory, *injection)
                      : internal::UnmapWhenUnused(pid_, *memory, *maps, plan->to_unmap, islands,
                                                  timeout, store_.park_path());
  if (!freed) {
    return Fail(ErrorCode::kInternal,
                "revert in pid {}: calls are redirected, but {} (run `hotpatch recover` to "
                "free the old code later)",
                pid_, freed.error().ToString());
  }
  FaultPoint("before-commit");
  if (auto st = store_.Save(plan->next); !st) return std::unexpected(st.error());
  (void)RemoveJournal(journal_path);
  return report;
}

}  // namespace patchlab::patchcore

#include "patchcore/patcher.h"

#include <sys/mman.h>

#include <cstring>
#include <utility>

#include "base/log.h"
#include "patchcore/internal/apply_plan.h"
#include "patchcore/internal/inherited_state.h"
#include "patchcore/internal/rollback_guard.h"
#include "patchcore/internal/staged_object.h"
#include "patchcore/internal/stop_world.h"
#include "patchcore/island.h"
#include "patchcore/journal.h"
#include "patchcore/module_set.h"
#include "patchcore/process_maps.h"
#include "patchcore/process_memory.h"
#include "patchcore/remote_syscall.h"

namespace patchlab::patchcore {
namespace {

using internal::ApplyPlan;
using internal::RollbackGuard;
using internal::StagedObject;

// The island header: magic, pid, start time. Lets a reader of the process
// alone (without host state) recognise our pages.
std::vector<uint8_t> IslandHeader(pid_t pid, uint64_t start_time) {
  std::vector<uint8_t> h(kIslandHeaderSize, 0);
  std::memcpy(h.data(), kIslandMagic, sizeof kIslandMagic);
  uint64_t p = static_cast<uint64_t>(pid);
  std::memcpy(h.data() + 16, &p, 8);
  std::memcpy(h.data() + 24, &start_time, 8);
  std::memcpy(h.data() + kIslandStubOffset, kIslandStub, sizeof kIslandStub);
  return h;
}

// What the planning reads of a running process, and what it decided.
struct PlannedApply {
  ProcessMaps maps;
  ProcessMemory memory;
  ModuleSet modules;  // their decoded files also serve the stack check
  ApplyPlan plan;
  InjectionSite injection;
};

// Every check and every change planned while the process runs.
Result<PlannedApply> PlanApply(pid_t pid, const StateStore& store, const PreparedPackage& prepared,
                               const ProcessState& state) {
  const Manifest& m = prepared.manifest();
  auto replaced = internal::CheckStackRules(m, state, pid);
  if (!replaced) return std::unexpected(std::move(replaced.error()));
  auto maps = ProcessMaps::Read(pid);
  if (!maps) return std::unexpected(std::move(maps.error()));
  auto memory = ProcessMemory::Open(pid);
  if (!memory) return std::unexpected(std::move(memory.error()));
  auto modules = ModuleSet::Load(pid, *maps, &prepared.files());
  if (!modules) return std::unexpected(std::move(modules.error()));
  auto target = internal::FindTargetModule(m, *modules, pid);
  if (!target) return std::unexpected(std::move(target.error()));
  auto object = internal::PrepareObject(prepared.object(), m, **target, *modules, *memory);
  if (!object) return std::unexpected(std::move(object.error()));
  auto functions = internal::PlanFunctions(m, **target, *modules, *object, state, *memory);
  if (!functions) return std::unexpected(std::move(functions.error()));
  auto injection = FindInjectionSite(*memory, *maps);
  if (!injection) return std::unexpected(std::move(injection.error()));
  auto plan = internal::PlanChanges(prepared.package(), **target, *object, std::move(*functions),
                                    std::move(*replaced), state, *maps, *memory,
                                    IslandHeader(pid, store.start_time()), pid);
  if (!plan) return std::unexpected(std::move(plan.error()));
  return PlannedApply{std::move(*maps), std::move(*memory), std::move(*modules), std::move(*plan),
                      *injection};
}

// Every thread stopped with none inside the code being replaced, the code
// still what was planned against, and the staged pages still in place.
Result<internal::StoppedWorld> StopForSwitch(pid_t pid, const ApplyPlan& plan,
                                             const ProcessMemory& memory, const ModuleSet& modules,
                                             const StagedObject& staged,
                                             std::chrono::milliseconds timeout,
                                             const StateStore& store) {
  auto world = internal::StopWorld(pid, memory, plan.guarded, timeout, store.park_path(), &modules);
  if (!world) return std::unexpected(std::move(world.error()));
  for (const internal::PlannedFunction& pf : plan.functions) {
    if (pf.stacked) continue;
    auto now = memory.Read(pf.entry + pf.layout.patch_offset, pf.original.size());
    if (!now || *now != pf.original) {
      return Fail(ErrorCode::kRefused,
                  "function {}: its code changed while being checked (another patcher?)",
                  pf.mapping.old_name);
    }
  }
  if (!staged.Intact()) {
    return Fail(ErrorCode::kRefused,
                "pid {} changed or unmapped the patch object's pages while they were prepared",
                pid);
  }
  return world;
}

// The live writes: new entries, stacked slots, sites of superseded patches.
Status WriteLive(const ApplyPlan& plan, RollbackGuard& undo) {
  int count = 0;
  for (const JournalWrite& w : plan.live) {
    // SAFETY: every thread of the process is stopped (Tracee), and the stack
    // check found no thread whose PC or return address lies in a function
    // being replaced or in a patch being superseded, so no thread can resume
    // inside the bytes written here: a function entry (whole instructions)
    // or an island slot's 8-byte address.
    if (auto st = undo.Write(w); !st) return st;
    FaultPoint(fmt::format("after-write-{}", ++count));
  }
  return {};
}

// With every thread stopped at a safe moment: the live writes, then the
// threads resume. A failed write undoes the ones before it; `*undone` says
// whether that got all the way (else the jumps may lead into the staged
// object, which must then stay, and the journal with it).
Status Switch(const ApplyPlan& plan, Tracee& tracee, const ProcessMemory& memory,
              ApplyReport& report, bool* undone) {
  RollbackGuard undo(memory, nullptr);
  if (auto st = WriteLive(plan, undo); !st) {
    if (auto u = undo.Undo(); !u) {
      *undone = false;
      Log("patchcore")->error("{}; run `hotpatch recover`", u.error().ToString());
      return std::unexpected(std::move(st.error()).AddContext("rollback incomplete"));
    }
    (void)tracee.Detach();
    if (st.error().code() == ErrorCode::kTargetGone) return st;
    return Fail(ErrorCode::kRolledBack, "apply of {} failed part-way and was rolled back: {}",
                report.patch_id, st.error().ToString());
  }
  undo.Commit();
  auto detached = tracee.Detach();
  report.pause = tracee.held();
  return detached;
}

// Gives up an apply before anything live changed, or after the switch was
// undone: the staged pages go, then the journal; the process runs its
// original code. When the pages cannot be taken out the journal stays, so
// `hotpatch recover` can finish.
std::unexpected<Error> Abandon(StagedObject* staged, Error cause, const StateStore& store) {
  if (staged) {
    // A process that is gone needs no cleaning up, and no recovery.
    if (auto st = staged->Unstage(); !st && st.error().code() != ErrorCode::kTargetGone) {
      return std::unexpected(std::move(cause).AddContext(fmt::format(
          "the prepared patch object stays mapped ({}); run `hotpatch recover`", st.error())));
    }
  }
  (void)RemoveJournal(store.journal_path());
  return std::unexpected(std::move(cause));
}

// A staging failure is a failed apply that was rolled back (or a vanished
// target): whatever was mapped is gone again.
Error StagingFailed(Error cause, const std::string& id) {
  if (cause.code() == ErrorCode::kTargetGone) return cause;
  return Error(ErrorCode::kRolledBack,
               fmt::format("apply of {} failed part-way and was rolled back: {}", id, cause));
}

// The superseded patches' objects go once the new state is saved: nothing
// jumps there any more and no thread was inside them at the switch. A
// patcher killed before leaves an unused mapping behind, never a slot
// pointing into freed memory.
void FreeSuperseded(pid_t pid, const PlannedApply& planned, std::vector<std::string>& warnings) {
  if (planned.plan.replaced_mappings.empty()) return;
  auto tracee = Tracee::AttachOne(pid);
  if (!tracee) {
    warnings.push_back("leaving superseded patches mapped: " + tracee.error().ToString());
    return;
  }
  RemoteSyscall sys(*tracee, tracee->threads().front(), planned.memory, planned.injection);
  std::vector<RemotePtr> islands;
  for (const IslandState& is : planned.plan.next.islands) islands.push_back(is.addr);
  sys.UseStubOf(islands);
  for (const RemoteRange& r : planned.plan.replaced_mappings) {
    if (auto st = sys.Munmap(r.start, r.size()); !st) {
      warnings.push_back("leaving a superseded patch mapped: " + st.error().ToString());
    }
  }
}

// The new state saved, the superseded objects freed, the journal removed.
Status Commit(pid_t pid, const StateStore& store, const PlannedApply& planned,
              ApplyReport& report) {
  FaultPoint("before-commit");
  if (auto st = store.Save(planned.plan.next); !st) {
    return std::unexpected(
        std::move(st.error())
            .AddContext("patch applied but its state could not be saved; run `hotpatch recover`"));
  }
  FreeSuperseded(pid, planned, report.warnings);
  (void)RemoveJournal(store.journal_path());
  return {};
}

}  // namespace

Result<Patcher> Patcher::Open(pid_t pid) {
  auto store = StateStore::Open(pid);
  if (!store) return std::unexpected(std::move(store.error()));
  return Patcher(pid, std::move(*store));
}

bool Patcher::HasPendingJournal() const {
  std::error_code ec;
  return std::filesystem::exists(store_.journal_path(), ec) ||
         std::filesystem::exists(store_.park_path(), ec);
}

Result<ProcessState> Patcher::LoadForChange() const {
  if (HasPendingJournal()) {
    return Fail(ErrorCode::kRefused,
                "pid {} has an interrupted operation; run `hotpatch recover` first", pid_);
  }
  return store_.Load();
}

Result<ApplyReport> Patcher::Apply(const PatchPackage& package, const ApplyOptions& options) {
  auto prepared = PreparedPackage::Prepare(package, options);
  if (!prepared) return std::unexpected(std::move(prepared.error()));
  return Apply(*prepared, options);
}

Result<pid_t> Patcher::AdoptInherited() {
  auto state = LoadForChange();
  if (!state) return std::unexpected(std::move(state.error()));
  if (!state->patches.empty()) return 0;
  auto maps = ProcessMaps::Read(pid_);
  if (!maps) return std::unexpected(std::move(maps.error()));
  auto memory = ProcessMemory::Open(pid_);
  if (!memory) return std::unexpected(std::move(memory.error()));
  auto found = internal::FindInheritedState(pid_, store_.start_time(), *maps, *memory);
  if (!found) return std::unexpected(std::move(found.error()));
  if (!*found) return 0;
  if (auto st = store_.Save((*found)->state); !st) return std::unexpected(st.error());
  Log("patchcore")
      ->info("pid {}: adopted the patch stack inherited from pid {}", pid_, (*found)->origin);
  return (*found)->origin;
}

Result<ApplyReport> Patcher::Apply(const PreparedPackage& prepared, const ApplyOptions& options) {
  const Manifest& m = prepared.manifest();
  auto adopted = AdoptInherited();
  if (!adopted) return std::unexpected(std::move(adopted.error()));
  auto state = LoadForChange();
  if (!state) return std::unexpected(std::move(state.error()));
  auto planned = PlanApply(pid_, store_, prepared, *state);
  if (!planned) return std::unexpected(std::move(planned.error()));
  ApplyReport report{.patch_id = m.id, .seq = m.seq, .functions = planned->plan.reports};
  report.inherited_from = *adopted;
  report.mapped_bytes = planned->plan.mapped_bytes;
  report.island_bytes = planned->plan.new_islands.size() * kIslandPageSize;
  report.warnings = prepared.warnings();
  // The journal names every mapping before it exists in the target.
  if (auto st = SaveJournal(store_.journal_path(),
                            internal::JournalFor(planned->plan, m.id, state->serial));
      !st) {
    return std::unexpected(st.error());
  }
  auto staged = StagedObject::Stage(pid_, planned->plan, planned->memory, planned->injection);
  if (!staged) return Abandon(nullptr, StagingFailed(std::move(staged.error()), m.id), store_);
  report.staging = staged->held();
  FaultPoint("after-map");
  auto world = StopForSwitch(pid_, planned->plan, planned->memory, planned->modules, *staged,
                             options.timeout, store_);
  if (!world) return Abandon(&*staged, std::move(world.error()), store_);
  report.retries = world->retries;
  report.attach = world->tracee.attach_time();
  bool undone = true;
  if (auto st = Switch(planned->plan, world->tracee, planned->memory, report, &undone); !st) {
    if (undone) return Abandon(&*staged, std::move(st.error()), store_);
    staged->Keep();
    return std::unexpected(st.error());
  }
  staged->Keep();
  if (auto st = Commit(pid_, store_, *planned, report); !st) return std::unexpected(st.error());
  Log("patchcore")
      ->info("pid {}: applied {} (seq {}), pause {} us, {} retries", pid_, m.id, m.seq,
             report.pause.count(), report.retries);
  return report;
}

}  // namespace patchlab::patchcore

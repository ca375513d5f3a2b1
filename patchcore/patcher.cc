#include "patchcore/patcher.h"

#include <sys/mman.h>

#include <cstring>
#include <utility>

#include "base/log.h"
#include "patchcore/internal/apply_plan.h"
#include "patchcore/internal/rollback_guard.h"
#include "patchcore/internal/stop_world.h"
#include "patchcore/island.h"
#include "patchcore/journal.h"
#include "patchcore/module_set.h"
#include "patchcore/process_maps.h"
#include "patchcore/process_memory.h"
#include "patchcore/remote_syscall.h"

namespace patchlab::patchcore {
namespace {

using Clock = std::chrono::steady_clock;
using internal::ApplyPlan;
using internal::RollbackGuard;

std::chrono::microseconds Since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t);
}

// The island header: magic, pid, start time. Lets a reader of the process
// alone (without host state) recognise our pages.
std::vector<uint8_t> IslandHeader(pid_t pid, uint64_t start_time) {
  std::vector<uint8_t> h(kIslandHeaderSize, 0);
  std::memcpy(h.data(), kIslandMagic, sizeof kIslandMagic);
  uint64_t p = static_cast<uint64_t>(pid);
  std::memcpy(h.data() + 16, &p, 8);
  std::memcpy(h.data() + 24, &start_time, 8);
  return h;
}

// The signature, unless unsigned packages are allowed (then a warning).
Status CheckSignature(const PatchPackage& package, const ApplyOptions& options,
                      std::vector<std::string>& warnings) {
  if (!options.allow_unsigned) {
    if (options.pubkey.empty()) {
      return Fail(ErrorCode::kInvalidArgument, "give --pubkey FILE (or --allow-unsigned)");
    }
    return VerifyPackage(package, options.pubkey);
  }
  if (!package.is_signed()) {
    warnings.push_back(fmt::format(
        "package {} is unsigned; applied because --allow-unsigned was given", package.manifest.id));
  }
  return {};
}

// What the planning reads of a running process.
struct ProcessView {
  ProcessMaps maps;
  ProcessMemory memory;
  ModuleSet modules;
};

Result<ProcessView> ReadProcess(pid_t pid) {
  auto maps = ProcessMaps::Read(pid);
  if (!maps) return std::unexpected(std::move(maps.error()));
  auto memory = ProcessMemory::Open(pid);
  if (!memory) return std::unexpected(std::move(memory.error()));
  auto modules = ModuleSet::Load(pid, *maps);
  if (!modules) return std::unexpected(std::move(modules.error()));
  return ProcessView{std::move(*maps), std::move(*memory), std::move(*modules)};
}

// Every thread stopped with none inside the code being replaced, and the
// code still what was planned against. On failure the journal is removed:
// nothing was changed.
Result<internal::StoppedWorld> StopForSwitch(pid_t pid, const ApplyPlan& plan,
                                             const ProcessMemory& memory,
                                             std::chrono::milliseconds timeout,
                                             const StateStore& store) {
  auto world = internal::StopWorld(pid, memory, plan.guarded, timeout, store.park_path());
  if (!world) {
    (void)RemoveJournal(store.journal_path());
    return std::unexpected(std::move(world.error()));
  }
  for (const internal::PlannedFunction& pf : plan.functions) {
    if (pf.stacked) continue;
    auto now = memory.Read(pf.entry + pf.layout.patch_offset, pf.original.size());
    if (!now || *now != pf.original) {
      (void)world->tracee.Detach();
      (void)RemoveJournal(store.journal_path());
      return Fail(ErrorCode::kRefused,
                  "function {}: its code changed while being checked (another patcher?)",
                  pf.mapping.old_name);
    }
  }
  return world;
}

// Maps and fills the patch object and the new island pages (nothing refers
// to them yet), writes the fresh slots, and gives the injection thread its
// registers back: a patcher killed after this leaves every thread able to run.
Status MapObject(const ApplyPlan& plan, const ProcessMemory& memory, RemoteSyscall& sys,
                 RollbackGuard& undo) {
  if (auto st = undo.Map(plan.mapping); !st) return st;
  if (auto st = memory.Write(plan.mapping.start, plan.image); !st) return st;
  for (const PageProtection& p : plan.protections) {
    if (auto st = sys.Mprotect(plan.mapping.start + static_cast<int64_t>(p.offset), p.size, p.prot);
        !st) {
      return st;
    }
  }
  for (RemotePtr page : plan.new_islands) {
    if (auto st = undo.Map({page, page + static_cast<int64_t>(kIslandPageSize)}); !st) return st;
    if (auto st = memory.Write(page, plan.island_header); !st) return st;
  }
  for (const JournalWrite& w : plan.slot_writes) {
    // SAFETY: every thread is stopped, and no jump leads to this slot yet.
    if (auto st = undo.Write(w); !st) return st;
  }
  for (RemotePtr page : plan.new_islands) {
    if (auto st = sys.Mprotect(page, kIslandPageSize, PROT_READ | PROT_EXEC); !st) return st;
  }
  return sys.Restore();
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

// The superseded patches' objects go once the new state is saved: a patcher
// killed from here on leaves at most an unused mapping behind, never a slot
// pointing into freed memory.
Status FreeSuperseded(const ApplyPlan& plan, const StateStore& store, RemoteSyscall& sys,
                      std::vector<std::string>& warnings) {
  if (plan.replaced_mappings.empty()) return {};
  if (auto st = store.Save(plan.next); !st) return st;
  for (const RemoteRange& r : plan.replaced_mappings) {
    if (auto st = sys.Munmap(r.start, r.size()); !st) {
      warnings.push_back("leaving a superseded patch mapped: " + st.error().ToString());
    }
  }
  return {};
}

// After `cause`, undoes every change `undo` holds; the process runs on its
// original code. When an undo write fails the journal stays for `recover`.
std::unexpected<Error> RollBack(Error cause, RollbackGuard& undo, RemoteSyscall& sys,
                                Tracee& tracee, const StateStore& store, const std::string& id) {
  if (auto st = undo.Undo(); !st) {
    Log("patchcore")->error("{}; run `hotpatch recover`", st.error().ToString());
    return std::unexpected(std::move(cause).AddContext("rollback incomplete"));
  }
  (void)sys.Restore();
  (void)tracee.Detach();
  (void)RemoveJournal(store.journal_path());
  if (cause.code() == ErrorCode::kTargetGone) return std::unexpected(std::move(cause));
  return Fail(ErrorCode::kRolledBack, "apply of {} failed part-way and was rolled back: {}", id,
              cause.ToString());
}

// With every thread stopped at a safe moment: maps the object, makes the
// live writes, resumes the threads, and commits the new state. Any failure
// before the threads resume undoes every change.
Status Switch(const ApplyPlan& plan, Tracee& tracee, const ProcessMemory& memory,
              RemotePtr syscall_insn, const StateStore& store, ApplyReport& report) {
  RemoteSyscall sys(tracee, tracee.threads().front(), syscall_insn);
  RollbackGuard undo(memory, &sys);
  auto switched = [&]() -> Status {
    if (auto st = MapObject(plan, memory, sys, undo); !st) return st;
    FaultPoint("after-map");
    if (auto st = WriteLive(plan, undo); !st) return st;
    if (auto st = FreeSuperseded(plan, store, sys, report.warnings); !st) return st;
    return sys.Restore();
  }();
  if (!switched)
    return RollBack(std::move(switched.error()), undo, sys, tracee, store, report.patch_id);
  undo.Commit();
  auto detached = tracee.Detach();
  report.pause = Since(tracee.first_stop());
  if (!detached) return std::unexpected(std::move(detached.error()));
  FaultPoint("before-commit");
  if (auto st = store.Save(plan.next); !st) {
    return std::unexpected(
        std::move(st.error())
            .AddContext("patch applied but its state could not be saved; run `hotpatch recover`"));
  }
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
  const Manifest& m = package.manifest;
  ApplyReport report;
  report.patch_id = m.id;
  report.seq = m.seq;
  if (auto st = CheckSignature(package, options, report.warnings); !st) {
    return std::unexpected(st.error());
  }
  auto state = LoadForChange();
  if (!state) return std::unexpected(std::move(state.error()));
  auto replaced = internal::CheckStackRules(m, *state, pid_);
  if (!replaced) return std::unexpected(std::move(replaced.error()));
  auto process = ReadProcess(pid_);
  if (!process) return std::unexpected(std::move(process.error()));
  auto target = internal::FindTargetModule(m, process->modules, pid_);
  if (!target) return std::unexpected(std::move(target.error()));
  auto object = internal::PrepareObject(package, **target, process->modules, process->memory);
  if (!object) return std::unexpected(std::move(object.error()));
  auto functions = internal::PlanFunctions(m, **target, *object, *state, process->memory);
  if (!functions) return std::unexpected(std::move(functions.error()));
  auto syscall_insn = FindSyscallInstruction(process->memory, process->maps);
  if (!syscall_insn) return std::unexpected(std::move(syscall_insn.error()));
  // Every change is planned, and the journal saved (fsync), while the process
  // runs, so the pause holds no disk I/O.
  auto plan = internal::PlanChanges(package, **target, *object, std::move(*functions),
                                    std::move(*replaced), *state, process->maps, process->memory,
                                    IslandHeader(pid_, store_.start_time()), pid_);
  if (!plan) return std::unexpected(std::move(plan.error()));
  report.functions = plan->reports;
  report.mapped_bytes = plan->mapped_bytes;
  report.island_bytes = plan->new_islands.size() * kIslandPageSize;
  if (auto st =
          SaveJournal(store_.journal_path(), internal::JournalFor(*plan, m.id, state->serial));
      !st) {
    return std::unexpected(st.error());
  }
  auto world = StopForSwitch(pid_, *plan, process->memory, options.timeout, store_);
  if (!world) return std::unexpected(std::move(world.error()));
  report.retries = world->retries;
  report.attach = world->tracee.attach_time();
  if (auto st = Switch(*plan, world->tracee, process->memory, *syscall_insn, store_, report); !st) {
    return std::unexpected(st.error());
  }
  Log("patchcore")
      ->info("pid {}: applied {} (seq {}), pause {} us, {} retries", pid_, m.id, m.seq,
             report.pause.count(), report.retries);
  return report;
}

}  // namespace patchlab::patchcore

// Patcher: revert, status, verify and recover (apply is in patcher.cc).
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "base/file_util.h"
#include "base/log.h"
#include "patchcore/internal/stop_world.h"
#include "patchcore/island.h"
#include "patchcore/journal.h"
#include "patchcore/patcher.h"
#include "patchcore/process_maps.h"
#include "patchcore/process_memory.h"
#include "patchcore/remote_syscall.h"

namespace patchlab::patchcore {
namespace {

using Clock = std::chrono::steady_clock;

// Unmaps `ranges` once no thread runs in or returns into them; the caller has
// already redirected every jump away from them.
Status UnmapWhenUnused(pid_t pid, const ProcessMemory& memory, const ProcessMaps& maps,
                       const std::vector<RemoteRange>& ranges, std::chrono::milliseconds timeout,
                       const std::filesystem::path& park_journal) {
  if (ranges.empty()) return {};
  std::vector<GuardedRange> guarded;
  for (const RemoteRange& r : ranges) guarded.push_back({r, fmt::format("mapping at {}", r.start)});
  auto world = internal::StopWorld(pid, memory, guarded, timeout, park_journal);
  if (!world) return std::unexpected(std::move(world.error()));
  auto insn = FindSyscallInstruction(memory, maps);
  if (!insn) return std::unexpected(std::move(insn.error()));
  RemoteSyscall sys(world->tracee, world->tracee.threads().front(), *insn);
  for (const RemoteRange& r : ranges) {
    if (auto st = sys.Munmap(r.start, r.size()); !st) return st;
  }
  if (auto st = sys.Restore(); !st) return st;
  return world->tracee.Detach();
}

}  // namespace

Result<RevertReport> Patcher::Revert(std::optional<std::string> id,
                                     std::chrono::milliseconds timeout) {
  if (HasPendingJournal()) {
    return Fail(ErrorCode::kRefused,
                "pid {} has an interrupted operation; run `hotpatch recover` "
                "first",
                pid_);
  }
  auto loaded = store_.Load();
  if (!loaded) return std::unexpected(std::move(loaded.error()));
  const ProcessState& state = *loaded;
  RevertReport report;
  std::set<std::string> removing;
  if (id) {
    if (!state.FindPatch(*id)) {
      return Fail(ErrorCode::kInvalidArgument, "patch {} is not live in pid {}", *id, pid_);
    }
    removing.insert(*id);
  } else {
    for (const PatchState& p : state.patches) removing.insert(p.id);
  }
  if (removing.empty()) return report;
  for (const PatchState& p : state.patches) {
    if (removing.contains(p.id)) continue;
    for (const std::string& dep : p.depends) {
      if (removing.contains(dep)) {
        return Fail(ErrorCode::kRefused,
                    "patch {} is needed by live patch {} (it depends on it); revert {} first, or "
                    "revert --all",
                    dep, p.id, p.id);
      }
    }
  }
  for (auto it = state.patches.rbegin(); it != state.patches.rend(); ++it) {
    if (removing.contains(it->id)) report.reverted.push_back(it->id);
  }

  ProcessState next = state;
  std::erase_if(next.patches, [&](const PatchState& p) { return removing.contains(p.id); });
  std::vector<JournalWrite> writes;
  std::vector<RemoteRange> to_unmap;
  std::vector<GuardedRange> guarded;
  for (const PatchState& p : state.patches) {
    if (!removing.contains(p.id)) continue;
    to_unmap.push_back(p.mapping);
    guarded.push_back({p.mapping, "patch object of " + p.id});
  }
  for (const SiteState& site : state.sites) {
    auto before = state.LiveTarget(site.entry);
    auto after = next.LiveTarget(site.entry);
    if (after) {
      if (before && *before == *after) continue;
      writes.push_back({site.slot + static_cast<int64_t>(kSlotAddressOffset),
                        EncodeAddress(before.value_or(RemotePtr())), EncodeAddress(*after)});
      auto jump =
          EncodeSiteJump(site.patch_at, *after, site.slot, static_cast<uint32_t>(site.jump.size()));
      if (jump && *jump != site.jump) {
        writes.push_back({site.patch_at, site.jump, *jump});
        for (SiteState& s : next.sites) {
          if (s.entry == site.entry) s.jump = *jump;
        }
      }
    } else {
      writes.push_back({site.patch_at, site.jump, site.original});
      std::erase_if(next.sites, [&](const SiteState& s) { return s.entry == site.entry; });
    }
  }
  // Island pages no site uses any more are freed too.
  std::erase_if(next.islands, [&](const IslandState& is) {
    bool used = std::any_of(next.sites.begin(), next.sites.end(),
                            [&](const SiteState& s) { return s.island == is.addr; });
    if (!used) {
      RemoteRange r{is.addr, is.addr + static_cast<int64_t>(is.size)};
      to_unmap.push_back(r);
      guarded.push_back({r, "island page"});
    }
    return !used;
  });
  next.serial = state.serial + 1;

  auto maps = ProcessMaps::Read(pid_);
  if (!maps) return std::unexpected(std::move(maps.error()));
  auto memory = ProcessMemory::Open(pid_);
  if (!memory) return std::unexpected(std::move(memory.error()));
  auto insn = FindSyscallInstruction(*memory, *maps);
  if (!insn) return std::unexpected(std::move(insn.error()));

  // Redirecting calls away from a patch is safe whatever the threads are
  // doing; only unmapping its code must wait until no thread is inside.
  auto world = internal::StopWorld(pid_, *memory, {}, timeout);
  if (!world) return std::unexpected(std::move(world.error()));
  report.retries = world->retries;
  Tracee& tracee = world->tracee;

  Journal journal;
  journal.op = Journal::Op::kRevert;
  journal.patch_id = id.value_or("--all");
  journal.serial = state.serial;
  journal.writes = writes;
  journal.to_unmap = to_unmap;
  journal.new_state = next.ToJson();
  const auto journal_path = store_.journal_path();
  if (auto st = SaveJournal(journal_path, journal); !st) return std::unexpected(st.error());

  std::vector<const JournalWrite*> done;
  int count = 0;
  for (const JournalWrite& w : writes) {
    // SAFETY: every thread is stopped and none runs in or returns into the
    // patches being removed (stack check above). Restoring an entry puts back
    // whole original instructions; no thread can be inside them, since the
    // jump written there has been the only instruction executed at that spot.
    // Rewriting a slot's 8-byte address changes where the next call goes.
    if (auto st = memory->Write(w.addr, w.new_bytes); !st) {
      for (auto it = done.rbegin(); it != done.rend(); ++it) {
        (void)memory->Write((*it)->addr, (*it)->old_bytes);
      }
      (void)tracee.Detach();
      (void)RemoveJournal(journal_path);
      if (st.error().code() == ErrorCode::kTargetGone) return std::unexpected(st.error());
      return Fail(ErrorCode::kRolledBack,
                  "revert in pid {} failed part-way and was rolled back: {}", pid_,
                  st.error().ToString());
    }
    done.push_back(&w);
    FaultPoint(fmt::format("after-write-{}", ++count));
  }
  bool unmapped = false;
  {
    StackChecker checker;
    auto hit = checker.Check(tracee, *memory, guarded);
    if (hit && !*hit) {
      RemoteSyscall sys(tracee, tracee.threads().front(), *insn);
      for (const RemoteRange& r : to_unmap) {
        if (auto st = sys.Munmap(r.start, r.size()); !st) {
          Log("patchcore")->warn("pid {}: {}", pid_, st.error().ToString());
        }
      }
      unmapped = true;
    }
  }
  (void)tracee.Detach();
  report.pause =
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - tracee.first_stop());
  if (!unmapped) {
    // A thread was still inside; calls no longer go there, so it leaves soon.
    if (auto st = UnmapWhenUnused(pid_, *memory, *maps, to_unmap, timeout, store_.park_path());
        !st) {
      return Fail(ErrorCode::kInternal,
                  "revert in pid {}: calls are redirected, but {} (run `hotpatch recover` to "
                  "free the old code later)",
                  pid_, st.error().ToString());
    }
  }
  FaultPoint("before-commit");
  if (auto st = store_.Save(next); !st) return std::unexpected(st.error());
  (void)RemoveJournal(journal_path);
  return report;
}

Result<ProcessState> Patcher::Status() const { return store_.Load(); }

Result<VerifyReport> Patcher::Verify() const {
  VerifyReport report;
  if (HasPendingJournal()) {
    report.mismatches.push_back("an interrupted operation awaits `hotpatch recover`");
  }
  auto state = store_.Load();
  if (!state) return std::unexpected(std::move(state.error()));
  auto memory = ProcessMemory::Open(pid_);
  if (!memory) return std::unexpected(std::move(memory.error()));
  auto check = [&](RemotePtr addr, const std::vector<uint8_t>& want, const std::string& what) {
    ++report.checked;
    auto got = memory->Read(addr, want.size());
    if (!got) {
      report.mismatches.push_back(fmt::format("{} at {}: {}", what, addr, got.error().ToString()));
    } else if (*got != want) {
      report.mismatches.push_back(fmt::format("{} at {}: found {}, expected {}", what, addr,
                                              HexBytes(*got), HexBytes(want)));
    }
  };
  for (const SiteState& site : state->sites) {
    check(site.patch_at, site.jump, "entry jump of " + site.function);
    auto target = state->LiveTarget(site.entry);
    if (!target) {
      report.mismatches.push_back("site " + site.function + " has no live patch");
      continue;
    }
    check(site.slot, EncodeSlot(*target), "island slot of " + site.function);
  }
  for (const IslandState& is : state->islands) {
    std::vector<uint8_t> magic(kIslandMagic, kIslandMagic + sizeof kIslandMagic);
    check(is.addr, magic, "island marker");
  }
  for (const PatchState& p : state->patches) {
    for (const SegmentState& s : p.segments) {
      ++report.checked;
      auto got = memory->Read(s.addr, s.size);
      std::string_view bytes;
      if (got) bytes = std::string_view(reinterpret_cast<const char*>(got->data()), got->size());
      if (!got || Sha256Hex(bytes) != s.sha256) {
        report.mismatches.push_back(
            fmt::format("code of patch {} at {} ({} bytes) differs from what was loaded", p.id,
                        s.addr, s.size));
      }
    }
  }
  return report;
}

Result<RecoverReport> Patcher::Recover(std::chrono::milliseconds timeout) {
  RecoverReport report;
  if (std::filesystem::exists(store_.park_path())) {
    // A patcher killed while busy threads ran to their spin traps: take the
    // traps out first, so those threads go on.
    auto memory = ProcessMemory::Open(pid_);
    if (!memory) return std::unexpected(std::move(memory.error()));
    auto tracee = Tracee::Attach(pid_);
    if (!tracee) return std::unexpected(std::move(tracee.error()));
    if (auto st = internal::RemoveParkTraps(*memory, store_.park_path()); !st) {
      return std::unexpected(st.error());
    }
    if (auto st = tracee->Detach(); !st) return std::unexpected(st.error());
    report.had_journal = true;
  }
  const auto journal_path = store_.journal_path();
  auto journal = LoadJournal(journal_path);
  if (!journal) {
    if (journal.error().code() == ErrorCode::kNotFound) {
      report.action = report.had_journal ? "removed the spin traps of an interrupted stop" : "none";
      return report;
    }
    return std::unexpected(std::move(journal.error()));
  }
  report.had_journal = true;
  auto state = store_.Load();
  if (!state) return std::unexpected(std::move(state.error()));
  if (state->serial != journal->serial) {
    // The operation committed before its journal could be removed.
    (void)RemoveJournal(journal_path);
    report.action =
        fmt::format("{} of {} had committed; removed its journal",
                    journal->op == Journal::Op::kApply ? "apply" : "revert", journal->patch_id);
    return report;
  }
  auto maps = ProcessMaps::Read(pid_);
  if (!maps) return std::unexpected(std::move(maps.error()));
  auto memory = ProcessMemory::Open(pid_);
  if (!memory) return std::unexpected(std::move(memory.error()));
  const bool roll_back = journal->op == Journal::Op::kApply;
  {
    auto tracee = Tracee::Attach(pid_);
    if (!tracee) return std::unexpected(std::move(tracee.error()));
    if (roll_back) {
      for (auto it = journal->writes.rbegin(); it != journal->writes.rend(); ++it) {
        // SAFETY: every thread is stopped. Writing back the original bytes of
        // an entry (or a slot's previous address) is what the apply would
        // have done on failure; threads already inside the new code finish
        // there, and the new code stays mapped until none is left inside.
        if (auto st = memory->Write(it->addr, it->old_bytes); !st)
          return std::unexpected(st.error());
      }
    } else {
      for (const JournalWrite& w : journal->writes) {
        // SAFETY: every thread is stopped; these are the revert's own writes,
        // made again (idempotent), pointing calls away from removed code.
        if (auto st = memory->Write(w.addr, w.new_bytes); !st) return std::unexpected(st.error());
      }
    }
    if (auto st = tracee->Detach(); !st) return std::unexpected(st.error());
  }
  std::vector<RemoteRange> unmap = journal->to_unmap;
  if (roll_back) {
    // Only ranges that hold what the apply put there: a planned mapping the
    // patcher never made may be someone else's memory by now.
    unmap.clear();
    for (size_t i = 0; i < journal->mapped.size(); ++i) {
      const RemoteRange& r = journal->mapped[i];
      const auto& head =
          i < journal->mapped_heads.size() ? journal->mapped_heads[i] : std::vector<uint8_t>();
      auto got = memory->Read(r.start, head.size());
      if (!head.empty() && got && *got == head) unmap.push_back(r);
    }
  }
  if (auto st = UnmapWhenUnused(pid_, *memory, *maps, unmap, timeout, store_.park_path()); !st) {
    return std::unexpected(
        std::move(st.error()).AddContext("code is restored, but old patch pages stay mapped"));
  }
  if (!roll_back) {
    auto next = ProcessState::FromJson(journal->new_state, journal_path.string());
    if (!next) return std::unexpected(std::move(next.error()));
    if (auto st = store_.Save(*next); !st) return std::unexpected(st.error());
  }
  (void)RemoveJournal(journal_path);
  report.action = roll_back ? "rolled back the interrupted apply of " + journal->patch_id
                            : "completed the interrupted revert of " + journal->patch_id;
  return report;
}

}  // namespace patchlab::patchcore

// Patcher: the recorded state, verify, and recover (apply is in patcher.cc,
// revert in patcher_revert.cc).
#include <algorithm>
#include <utility>

#include "base/file_util.h"
#include "patchcore/internal/inherited_state.h"
#include "patchcore/internal/stop_world.h"
#include "patchcore/internal/unmap_when_unused.h"
#include "patchcore/island.h"
#include "patchcore/journal.h"
#include "patchcore/patcher.h"
#include "patchcore/process_maps.h"
#include "patchcore/process_memory.h"
#include "patchcore/remote_syscall.h"

namespace patchlab::patchcore {
namespace {

// Writes the journal's bytes again with every thread held: an apply's old
// bytes (newest first: rolled back), a revert's new ones (rolled forward).
Status ReplayJournal(const Journal& journal, pid_t pid, const ProcessMemory& memory) {
  auto tracee = Tracee::Attach(pid);
  if (!tracee) return std::unexpected(std::move(tracee.error()));
  if (journal.op == Journal::Op::kApply) {
    auto in_new_mapping = [&](RemotePtr addr) {
      return std::any_of(journal.mapped.begin(), journal.mapped.end(),
                         [&](const RemoteRange& r) { return r.Contains(addr); });
    };
    for (auto it = journal.writes.rbegin(); it != journal.writes.rend(); ++it) {
      // A write into a page the apply mapped itself needs no undo: the page
      // goes (when it was made at all; the patcher may have died before).
      if (in_new_mapping(it->addr)) continue;
      // SAFETY: every thread is stopped. Writing back the original bytes of
      // an entry (or a slot's previous address) is what the apply would
      // have done on failure; threads already inside the new code finish
      // there, and the new code stays mapped until none is left inside.
      if (auto st = memory.Write(it->addr, it->old_bytes); !st) return st;
    }
  } else {
    for (const JournalWrite& w : journal.writes) {
      // SAFETY: every thread is stopped; these are the revert's own writes,
      // made again (idempotent), pointing calls away from removed code.
      if (auto st = memory.Write(w.addr, w.new_bytes); !st) return st;
    }
  }
  return tracee->Detach();
}

// What a rolled-back apply must free: only ranges that hold what the apply
// put there, since a planned mapping the patcher never made may be someone
// else's memory by now; or the range that the mmap the patcher died in
// returned (`made`: still empty, it shows nothing of ours yet).
std::vector<RemoteRange> MappedByApply(const Journal& journal, const ProcessMemory& memory,
                                       const std::vector<uint64_t>& made) {
  std::vector<RemoteRange> unmap;
  for (size_t i = 0; i < journal.mapped.size(); ++i) {
    const RemoteRange& r = journal.mapped[i];
    const auto& head =
        i < journal.mapped_heads.size() ? journal.mapped_heads[i] : std::vector<uint8_t>();
    auto got = memory.Read(r.start, head.size());
    const bool in_flight = std::find(made.begin(), made.end(), r.start.addr()) != made.end();
    if (in_flight || (!head.empty() && got && *got == head)) unmap.push_back(r);
  }
  return unmap;
}

}  // namespace

Result<ProcessState> Patcher::State() const { return store_.Load(); }

Result<VerifyReport> Patcher::Verify() const {
  VerifyReport report;
  if (HasPendingJournal()) {
    report.mismatches.push_back("an interrupted operation awaits `hotpatch recover`");
  }
  auto state = store_.Load();
  if (!state) return std::unexpected(std::move(state.error()));
  auto memory = ProcessMemory::Open(pid_);
  if (!memory) return std::unexpected(std::move(memory.error()));
  auto mismatches = internal::StateMismatches(*state, *memory, &report.checked);
  report.mismatches.insert(report.mismatches.end(), mismatches.begin(), mismatches.end());
  return report;
}

Result<bool> Patcher::TakeOutParkTraps() {
  if (!std::filesystem::exists(store_.park_path())) return false;
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
  return true;
}

Result<StrandedThreads> Patcher::RestoreStranded() {
  auto maps = ProcessMaps::Read(pid_);
  if (!maps) return std::unexpected(std::move(maps.error()));
  auto memory = ProcessMemory::Open(pid_);
  if (!memory) return std::unexpected(std::move(memory.error()));
  const auto stubs = FindStrandedStubs(*memory, *maps);
  if (stubs.empty()) return StrandedThreads{};
  auto tracee = Tracee::Attach(pid_);
  if (!tracee) return std::unexpected(std::move(tracee.error()));
  auto restored = RestoreStrandedThreads(*tracee, *memory, stubs);
  if (!restored) return std::unexpected(std::move(restored.error()));
  if (auto st = tracee->Detach(); !st) return std::unexpected(st.error());
  return restored;
}

Result<RecoverReport> Patcher::Recover(std::chrono::milliseconds timeout) {
  RecoverReport report;
  // A patcher killed while a thread ran its injected calls left that thread
  // waiting at a stub (an island's, a code cave's): it gets its own
  // registers back first.
  auto stranded = RestoreStranded();
  if (!stranded) return std::unexpected(std::move(stranded.error()));
  auto trapped = TakeOutParkTraps();
  if (!trapped) return std::unexpected(std::move(trapped.error()));
  report.had_journal = *trapped;
  report.stranded_threads = stranded->restored;
  const auto journal_path = store_.journal_path();
  auto journal = LoadJournal(journal_path);
  if (!journal) {
    if (journal.error().code() != ErrorCode::kNotFound) {
      return std::unexpected(std::move(journal.error()));
    }
    report.action = report.had_journal ? "removed the spin traps of an interrupted stop"
                    : stranded->restored > 0
                        ? fmt::format("gave {} thread(s) their registers back", stranded->restored)
                        : "none";
    return report;
  }
  report.had_journal = true;
  auto state = store_.Load();
  if (!state) return std::unexpected(std::move(state.error()));
  const bool apply = journal->op == Journal::Op::kApply;
  if (state->serial != journal->serial) {
    // The operation committed before its journal could be removed.
    (void)RemoveJournal(journal_path);
    report.action = fmt::format("{} of {} had committed; removed its journal",
                                apply ? "apply" : "revert", journal->patch_id);
    return report;
  }
  auto maps = ProcessMaps::Read(pid_);
  if (!maps) return std::unexpected(std::move(maps.error()));
  auto memory = ProcessMemory::Open(pid_);
  if (!memory) return std::unexpected(std::move(memory.error()));
  if (auto st = ReplayJournal(*journal, pid_, *memory); !st) return std::unexpected(st.error());
  auto unmap = apply ? MappedByApply(*journal, *memory, stranded->last_results) : journal->to_unmap;
  std::vector<RemotePtr> islands;
  for (const IslandState& is : state->islands) islands.push_back(is.addr);
  if (auto st = internal::UnmapWhenUnused(pid_, *memory, *maps, unmap, islands, timeout,
                                          store_.park_path());
      !st) {
    return std::unexpected(
        std::move(st.error()).AddContext("code is restored, but old patch pages stay mapped"));
  }
  if (!apply) {
    auto next = ProcessState::FromJson(journal->new_state, journal_path.string());
    if (!next) return std::unexpected(std::move(next.error()));
    if (auto st = store_.Save(*next); !st) return std::unexpected(st.error());
  }
  (void)RemoveJournal(journal_path);
  report.action = apply ? "rolled back the interrupted apply of " + journal->patch_id
                        : "completed the interrupted revert of " + journal->patch_id;
  return report;
}

}  // namespace patchlab::patchcore

// StopWorld: stop every thread of a process at a moment when no thread runs in
// or returns into the guarded ranges; what patcher Apply, Revert and Recover
// share.
//
// A thread found inside is not waited for by releasing the whole process and
// sampling it again: a function that is hot in several threads at once is
// then almost never free in all of them at the same moment, and threads that
// are stopped and resumed over and over can be starved by the scheduler.
// Instead the threads found outside stay stopped ("parked"), and only the
// busy ones run on for short, growing intervals, each looked at again after
// every interval, until all have left. Threads they create meanwhile are
// caught and checked too. A busy thread that does not leave within the park
// budget (it sleeps or spins inside) releases the process; the attempt is
// repeated with backoff until the deadline, then refused.
//
// So that a thread that is inside nearly all the time is still caught once it
// leaves, the place it returns to (the return address of its outermost
// guarded frame) gets a spin trap, `jmp .` (EB FE), for as long as the busy
// threads run: a thread that reaches it waits there, outside, until it is
// looked at and parked. Traps go only where no held thread is stopped inside
// the two bytes, are recorded in the park journal before they are written,
// and are removed while every thread is stopped, so no thread ever executes
// past them. A patcher killed meanwhile leaves threads spinning, never
// crashing; `hotpatch recover` takes the traps out again (RemoveParkTraps).
#pragma once

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <set>
#include <thread>

#include "base/error.h"
#include "patchcore/journal.h"
#include "patchcore/process_memory.h"
#include "patchcore/stack_check.h"
#include "patchcore/tracee.h"

namespace patchlab::patchcore::internal {

struct StoppedWorld {
  Tracee tracee;
  int retries = 0;  // intervals parked plus whole attempts repeated
};

inline constexpr uint8_t kSpinTrap[2] = {0xeb, 0xfe};  // jmp .

// Takes the spin traps of `park_journal` out of the process (the threads must
// be held), where they are still in place; removes the journal.
inline Status RemoveParkTraps(const ProcessMemory& memory,
                              const std::filesystem::path& park_journal) {
  auto traps = LoadJournal(park_journal);
  if (!traps) {
    return traps.error().code() == ErrorCode::kNotFound ? Status()
                                                        : Status(std::unexpected(traps.error()));
  }
  for (const JournalWrite& w : traps->writes) {
    auto now = memory.Read(w.addr, w.new_bytes.size());
    if (!now) return std::unexpected(std::move(now.error()));
    if (*now != w.new_bytes) continue;
    // SAFETY: every thread is held; a thread waiting at the trap resumes on
    // the original instruction that starts there.
    if (auto st = memory.Write(w.addr, w.old_bytes); !st) return st;
  }
  return RemoveJournal(park_journal);
}

namespace detail {

// Sets a spin trap at each busy thread's escape address where that is safe;
// the traps made, recorded in `park_journal` first.
inline Result<std::vector<JournalWrite>> SetParkTraps(const Tracee& tracee,
                                                      const ProcessMemory& memory,
                                                      const std::vector<StackHit>& busy,
                                                      const std::vector<GuardedRange>& guarded,
                                                      const std::filesystem::path& park_journal) {
  std::set<uint64_t> sites;
  for (const StackHit& h : busy) {
    if (h.escape) sites.insert(h.escape->addr());
  }
  std::vector<uint64_t> pcs;
  for (pid_t tid : tracee.threads()) {
    auto regs = tracee.GetRegs(tid);
    if (!regs) return std::unexpected(std::move(regs.error()));
    pcs.push_back(regs->rip);
  }
  Journal traps;
  for (uint64_t site : sites) {
    RemoteRange bytes{RemotePtr(site), RemotePtr(site + sizeof kSpinTrap)};
    bool overlaps_guarded = std::any_of(guarded.begin(), guarded.end(), [&](const GuardedRange& g) {
      return g.range.Contains(bytes.start) || g.range.Contains(bytes.end - 1);
    });
    bool thread_mid = std::any_of(pcs.begin(), pcs.end(), [&](uint64_t pc) {
      return pc > site && pc < site + sizeof kSpinTrap;
    });
    if (overlaps_guarded || thread_mid) continue;
    auto old = memory.Read(bytes.start, sizeof kSpinTrap);
    if (!old) continue;  // not readable: no trap, sampling alone
    traps.writes.push_back({bytes.start, *old, {kSpinTrap, kSpinTrap + sizeof kSpinTrap}});
  }
  if (traps.writes.empty()) return traps.writes;
  if (auto st = SaveJournal(park_journal, traps); !st) return std::unexpected(st.error());
  for (const JournalWrite& w : traps.writes) {
    // SAFETY: every thread is held; none is stopped inside these two bytes,
    // and only threads that are inside guarded code run before they are
    // taken out again (RemoveParkTraps).
    if (auto st = memory.Write(w.addr, w.new_bytes); !st) return std::unexpected(st.error());
  }
  return traps.writes;
}

}  // namespace detail

// kRefused naming the thread and function when the deadline passes with a
// thread still inside; other errors as Tracee::Attach. `park_journal` empty:
// no spin traps (sampling alone).
inline Result<StoppedWorld> StopWorld(pid_t pid, const ProcessMemory& memory,
                                      const std::vector<GuardedRange>& guarded,
                                      std::chrono::milliseconds timeout,
                                      const std::filesystem::path& park_journal = {}) {
  using Clock = std::chrono::steady_clock;
  using std::chrono::microseconds;
  const auto deadline = Clock::now() + timeout;
  StackChecker checker;
  if (!guarded.empty()) checker.Prepare(pid, memory);
  auto backoff = microseconds(500);
  auto park_budget = microseconds(2000);
  int retries = 0;
  while (true) {
    auto tracee = Tracee::Attach(pid);
    if (!tracee) return std::unexpected(std::move(tracee.error()));
    if (guarded.empty()) return StoppedWorld{std::move(*tracee), retries};
    auto busy = checker.Hits(*tracee, memory, guarded, tracee->threads());
    if (!busy) return std::unexpected(std::move(busy.error()));
    const auto park_end = std::min(deadline, Clock::now() + park_budget);
    auto interval = microseconds(50);
    bool trapped = false;
    if (!busy->empty() && !park_journal.empty()) {
      auto traps = detail::SetParkTraps(*tracee, memory, *busy, guarded, park_journal);
      if (!traps) {
        (void)RemoveParkTraps(memory, park_journal);
        return std::unexpected(std::move(traps.error()));
      }
      trapped = !traps->empty();
    }
    // Every way out of the parking below takes the traps out first, while
    // all threads are held.
    auto untrap = [&]() -> Status {
      if (!trapped) return {};
      trapped = false;
      return RemoveParkTraps(memory, park_journal);
    };
    while (!busy->empty() && Clock::now() + interval < park_end) {
      std::vector<pid_t> running;
      for (const StackHit& h : *busy) running.push_back(h.tid);
      if (auto st = tracee->ResumeThreads(running); !st) {
        (void)untrap();
        return std::unexpected(st.error());
      }
      std::this_thread::sleep_for(interval);
      interval = std::min(interval * 2, microseconds(1000));
      ++retries;
      if (auto st = tracee->StopThreads(running, Clock::now() + std::chrono::seconds(2)); !st) {
        (void)untrap();
        return std::unexpected(st.error());
      }
      auto born = tracee->HoldNewThreads();
      if (!born) {
        (void)untrap();
        return std::unexpected(std::move(born.error()));
      }
      std::vector<pid_t> again;
      for (pid_t tid : tracee->threads()) {
        bool was_running = std::find(running.begin(), running.end(), tid) != running.end();
        bool is_new = std::find(born->begin(), born->end(), tid) != born->end();
        if (was_running || is_new) again.push_back(tid);
      }
      busy = checker.Hits(*tracee, memory, guarded, again);
      if (!busy) {
        (void)untrap();
        return std::unexpected(std::move(busy.error()));
      }
    }
    if (auto st = untrap(); !st) return std::unexpected(st.error());
    if (busy->empty()) return StoppedWorld{std::move(*tracee), retries};
    const StackHit hit = busy->front();
    (void)tracee->Detach();
    if (Clock::now() + backoff > deadline) {
      return Fail(ErrorCode::kRefused,
                  "function {}: thread {} of pid {} still {} {} after {} ms ({} retries) (rule: no "
                  "thread may run in or return into replaced code)",
                  hit.name, hit.tid, pid, hit.frame == 0 ? "runs at" : "returns to", hit.address,
                  timeout.count(), retries);
    }
    ++retries;
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, microseconds(50000));
    park_budget = std::min(park_budget * 2, microseconds(50000));
  }
}

}  // namespace patchlab::patchcore::internal

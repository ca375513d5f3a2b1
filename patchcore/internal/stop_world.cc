#include "patchcore/internal/stop_world.h"

#include <algorithm>
#include <set>
#include <thread>
#include <utility>

#include "patchcore/journal.h"

namespace patchlab::patchcore::internal {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::microseconds;

// The spin traps of one parking round. Set() records them in the park journal
// before writing them; they come out again through Remove() or, on any other
// way out, when the guard goes (every thread still held), so no thread ever
// runs on past a trap it reached.
class ParkTrapGuard {
 public:
  ParkTrapGuard(const ProcessMemory& memory, std::filesystem::path park_journal)
      : memory_(memory), park_journal_(std::move(park_journal)) {}
  ParkTrapGuard(const ParkTrapGuard&) = delete;
  ParkTrapGuard& operator=(const ParkTrapGuard&) = delete;
  ~ParkTrapGuard() {
    if (armed_) (void)RemoveParkTraps(memory_, park_journal_);
  }

  // Sets a trap at each busy thread's escape address where that is safe.
  // REQUIRES: every thread of the process is held.
  Status Set(const Tracee& tracee, const std::vector<StackHit>& busy,
             const std::vector<GuardedRange>& guarded);
  // Takes the traps out now. REQUIRES: every thread is held.
  Status Remove() {
    if (!std::exchange(armed_, false)) return {};
    return RemoveParkTraps(memory_, park_journal_);
  }

 private:
  Result<std::vector<JournalWrite>> Plan(const Tracee& tracee, const std::vector<StackHit>& busy,
                                         const std::vector<GuardedRange>& guarded) const;

  const ProcessMemory& memory_;
  std::filesystem::path park_journal_;
  bool armed_ = false;
};

// The traps to set: one per distinct escape address that lies outside every
// guarded range, with no held thread stopped inside its two bytes, and that
// is readable.
Result<std::vector<JournalWrite>> ParkTrapGuard::Plan(
    const Tracee& tracee, const std::vector<StackHit>& busy,
    const std::vector<GuardedRange>& guarded) const {
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
  std::vector<JournalWrite> traps;
  for (uint64_t site : sites) {
    RemoteRange bytes{RemotePtr(site), RemotePtr(site + sizeof kSpinTrap)};
    bool overlaps_guarded = std::any_of(guarded.begin(), guarded.end(), [&](const GuardedRange& g) {
      return g.range.Contains(bytes.start) || g.range.Contains(bytes.end - 1);
    });
    bool thread_mid = std::any_of(pcs.begin(), pcs.end(), [&](uint64_t pc) {
      return pc > site && pc < site + sizeof kSpinTrap;
    });
    if (overlaps_guarded || thread_mid) continue;
    auto old = memory_.Read(bytes.start, sizeof kSpinTrap);
    if (!old) continue;  // not readable: no trap, sampling alone
    traps.push_back({bytes.start, *old, {kSpinTrap, kSpinTrap + sizeof kSpinTrap}});
  }
  return traps;
}

Status ParkTrapGuard::Set(const Tracee& tracee, const std::vector<StackHit>& busy,
                          const std::vector<GuardedRange>& guarded) {
  auto traps = Plan(tracee, busy, guarded);
  if (!traps) return std::unexpected(std::move(traps.error()));
  if (traps->empty()) return {};
  Journal journal;
  journal.writes = std::move(*traps);
  if (auto st = SaveJournal(park_journal_, journal); !st) return st;
  armed_ = true;  // from here on the guard takes out whatever got written
  for (const JournalWrite& w : journal.writes) {
    // SAFETY: every thread is held; none is stopped inside these two bytes,
    // and only threads that are inside guarded code run before they are
    // taken out again (Remove, or the guard's destructor).
    if (auto st = memory_.Write(w.addr, w.new_bytes); !st) return st;
  }
  return {};
}

// Lets the busy threads run for `interval`, stops them again, holds threads
// born meanwhile, and returns those of both that are still (or now) busy.
Result<std::vector<StackHit>> RunBusyThreads(Tracee& tracee, StackChecker& checker,
                                             const ProcessMemory& memory,
                                             const std::vector<GuardedRange>& guarded,
                                             const std::vector<StackHit>& busy,
                                             microseconds interval) {
  std::vector<pid_t> running;
  for (const StackHit& h : busy) running.push_back(h.tid);
  if (auto st = tracee.ResumeThreads(running); !st) return std::unexpected(st.error());
  std::this_thread::sleep_for(interval);
  if (auto st = tracee.StopThreads(running, Clock::now() + std::chrono::seconds(2)); !st) {
    return std::unexpected(st.error());
  }
  auto born = tracee.HoldNewThreads();
  if (!born) return std::unexpected(std::move(born.error()));
  std::vector<pid_t> again;
  for (pid_t tid : tracee.threads()) {
    bool was_running = std::find(running.begin(), running.end(), tid) != running.end();
    bool is_new = std::find(born->begin(), born->end(), tid) != born->end();
    if (was_running || is_new) again.push_back(tid);
  }
  return checker.Hits(tracee, memory, guarded, again);
}

// Parks every thread not in `busy` and lets the busy ones run in growing
// intervals (50 us doubling to 1 ms) until none is busy or `park_end` is
// near. Returns the threads still busy; every thread is held on return and
// every spin trap is out again.
Result<std::vector<StackHit>> ParkUntilFree(Tracee& tracee, StackChecker& checker,
                                            const ProcessMemory& memory,
                                            const std::vector<GuardedRange>& guarded,
                                            std::vector<StackHit> busy, Clock::time_point park_end,
                                            const std::filesystem::path& park_journal,
                                            int* retries) {
  ParkTrapGuard traps(memory, park_journal);
  if (!busy.empty() && !park_journal.empty()) {
    if (auto st = traps.Set(tracee, busy, guarded); !st) return std::unexpected(st.error());
  }
  auto interval = microseconds(50);
  while (!busy.empty() && Clock::now() + interval < park_end) {
    auto still = RunBusyThreads(tracee, checker, memory, guarded, busy, interval);
    if (!still) return std::unexpected(std::move(still.error()));
    busy = std::move(*still);
    interval = std::min(interval * 2, microseconds(1000));
    ++*retries;
  }
  if (auto st = traps.Remove(); !st) return std::unexpected(st.error());
  return busy;
}

std::unexpected<Error> RefuseBusy(const StackHit& hit, pid_t pid, std::chrono::milliseconds timeout,
                                  int retries) {
  return Fail(ErrorCode::kRefused,
              "function {}: thread {} of pid {} still {} {} after {} ms ({} retries) (rule: no "
              "thread may run in or return into replaced code)",
              hit.name, hit.tid, pid, hit.frame == 0 ? "runs at" : "returns to", hit.address,
              timeout.count(), retries);
}

}  // namespace

Status RemoveParkTraps(const ProcessMemory& memory, const std::filesystem::path& park_journal) {
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

Result<StoppedWorld> StopWorld(pid_t pid, const ProcessMemory& memory,
                               const std::vector<GuardedRange>& guarded,
                               std::chrono::milliseconds timeout,
                               const std::filesystem::path& park_journal,
                               const ModuleSet* modules) {
  const auto deadline = Clock::now() + timeout;
  StackChecker checker(modules);
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
    auto still = ParkUntilFree(*tracee, checker, memory, guarded, std::move(*busy), park_end,
                               park_journal, &retries);
    if (!still) return std::unexpected(std::move(still.error()));
    if (still->empty()) return StoppedWorld{std::move(*tracee), retries};
    const StackHit hit = still->front();
    (void)tracee->Detach();
    if (Clock::now() + backoff > deadline) return RefuseBusy(hit, pid, timeout, retries);
    ++retries;
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, microseconds(50000));
    park_budget = std::min(park_budget * 2, microseconds(50000));
  }
}

}  // namespace patchlab::patchcore::internal

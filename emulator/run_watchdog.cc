#include "emulator/run_watchdog.h"

#include <unicorn/unicorn.h>
#include <x86intrin.h>

#include <algorithm>

namespace patchlab::emulator {
namespace {

// TSC ticks per nanosecond, never more than the truth: each sample reads the
// TSC inside the interval the steady clock measures, so a preemption between
// the reads can only make the ratio smaller, and a smaller ratio only makes
// fast runs re-run more often. The best of three samples is kept.
double TicksPerNanosecond() {
  static const double ratio = [] {
    double best = 0;
    for (int i = 0; i < 3; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      uint64_t c0 = __rdtsc();
      std::this_thread::sleep_for(std::chrono::microseconds(700));
      uint64_t c1 = __rdtsc();
      auto t1 = std::chrono::steady_clock::now();
      double ns = std::chrono::duration<double, std::nano>(t1 - t0).count();
      if (ns > 0 && c1 > c0) best = std::max(best, static_cast<double>(c1 - c0) / ns);
    }
    return best;
  }();
  return ratio;
}

}  // namespace

RunWatchdog::RunWatchdog() : thread_([this] { Poll(); }) {}

RunWatchdog::~RunWatchdog() {
  {
    std::lock_guard lock(mu_);
    quit_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

uint64_t RunWatchdog::Now() { return __rdtsc(); }

uint64_t RunWatchdog::MinTicksFor(uint64_t blocks) {
  return static_cast<uint64_t>(static_cast<double>(blocks) / kMaxBlocksPerNanosecond *
                               TicksPerNanosecond());
}

void RunWatchdog::Begin(uc_struct* uc) {
  uc_ = uc;
  ++run_;
  state_.store((run_ << 2) | kRunning, std::memory_order_release);
}

bool RunWatchdog::End() {
  uint64_t old = state_.exchange(run_ << 2, std::memory_order_acq_rel);
  if ((old & kStopping) == 0) return false;
  // The watchdog claimed this run before it ended: wait until its
  // uc_emu_stop has returned, so that it cannot reach the next run.
  while (stopped_run_.load(std::memory_order_acquire) != run_) std::this_thread::yield();
  return true;
}

void RunWatchdog::Poll() {
  std::unique_lock lock(mu_);
  uint64_t seen = 0;
  while (!cv_.wait_for(lock, kPollPeriod, [this] { return quit_; })) {
    uint64_t s = state_.load(std::memory_order_acquire);
    // The same run in progress at two polls: it has run for a whole period.
    // Claiming it (kStopping) before stopping it makes End wait for the stop,
    // so the stop lands in this run or in none (uc_emu_stop on an engine
    // whose emulation is over does nothing). Unicorn's own `timeout` thread
    // calls uc_emu_stop from another thread the same way.
    if ((s & kRunning) != 0 && s == seen &&
        state_.compare_exchange_strong(s, s | kStopping, std::memory_order_acq_rel)) {
      uc_emu_stop(uc_);
      stopped_run_.store(s >> 2, std::memory_order_release);
    }
    seen = s;
  }
}

}  // namespace patchlab::emulator

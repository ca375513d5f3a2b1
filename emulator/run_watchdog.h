// RunWatchdog: ends sandbox runs that carry no block-budget hook and run for
// too long, and the clock that tells whether such a run may have gone past its
// budget.
//
// A fast run (Sandbox with RunMode::kFast) has no UC_HOOK_BLOCK, so nothing
// inside the engine counts its blocks or stops it. Two things stand in:
//  - the run's length in TSC ticks: a run shorter than MinTicksFor(budget)
//    cannot have executed `budget` blocks (see kMaxBlocksPerNanosecond), so
//    its outcome is the one a counting run would have had;
//  - this watchdog, a thread that calls uc_emu_stop on a run it sees in
//    progress at two consecutive polls (kPollPeriod apart), so that a loop
//    that never ends does end.
// Either way the caller re-runs the input in a counting sandbox, whose block
// budget decides deterministically: wall time only chooses which engine
// answers, never what the answer is.
//
// Thread-safety: Begin/End from one runner thread at a time; the watchdog's
// own thread is internal. Destroy it before the engines it may stop.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

struct uc_struct;

namespace patchlab::emulator {

class RunWatchdog {
 public:
  // No CPU emulator chains translated blocks faster than this (a block costs
  // the TB's exit check and a taken jump: at least half a cycle on any x86
  // core, over 0.08 ns at 6 GHz); 50 per ns leaves a factor of four.
  static constexpr double kMaxBlocksPerNanosecond = 50.0;
  static constexpr std::chrono::milliseconds kPollPeriod{5};

  // Starts the polling thread.
  RunWatchdog();
  // Stops and joins it.
  ~RunWatchdog();
  RunWatchdog(const RunWatchdog&) = delete;
  RunWatchdog& operator=(const RunWatchdog&) = delete;

  // Brackets one uc_emu_start on `uc`. End returns true when the watchdog
  // stopped (or may have stopped) this run: its outcome is then not to be
  // trusted. REQUIRES: Begin and End alternate.
  void Begin(uc_struct* uc);
  bool End();

  // The run clock (the TSC) and the fewest ticks in which `blocks` blocks
  // could possibly run. Calibrated once per process (about 2 ms).
  static uint64_t Now();
  static uint64_t MinTicksFor(uint64_t blocks);

 private:
  void Poll();

  // run number << 2 | kRunning | kStopping
  static constexpr uint64_t kRunning = 1, kStopping = 2;
  std::atomic<uint64_t> state_{0};
  std::atomic<uint64_t> stopped_run_{0};  // the watchdog's uc_emu_stop for this run returned
  uint64_t run_ = 0;
  uc_struct* uc_ = nullptr;  // published by the release store of state_

  std::mutex mu_;
  std::condition_variable cv_;
  bool quit_ = false;
  std::thread thread_;
};

}  // namespace patchlab::emulator

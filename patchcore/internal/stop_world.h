// StopWorld: stop every thread of a process at a moment when no thread runs in
// or returns into the guarded ranges. Retries with growing backoff until the
// deadline; what patcher Apply, Revert and Recover share.
#pragma once

#include <chrono>
#include <thread>

#include "base/error.h"
#include "patchcore/process_memory.h"
#include "patchcore/stack_check.h"
#include "patchcore/tracee.h"

namespace patchlab::patchcore::internal {

struct StoppedWorld {
  Tracee tracee;
  int retries = 0;
};

// kRefused naming the thread and function when the deadline passes with a
// thread still inside; other errors as Tracee::Attach.
inline Result<StoppedWorld> StopWorld(pid_t pid, const ProcessMemory& memory,
                                      const std::vector<GuardedRange>& guarded,
                                      std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  StackChecker checker;
  auto backoff = std::chrono::microseconds(500);
  int retries = 0;
  while (true) {
    auto tracee = Tracee::Attach(pid);
    if (!tracee) return std::unexpected(std::move(tracee.error()));
    if (guarded.empty()) return StoppedWorld{std::move(*tracee), retries};
    auto hit = checker.Check(*tracee, memory, guarded);
    if (!hit) return std::unexpected(std::move(hit.error()));
    if (!*hit) return StoppedWorld{std::move(*tracee), retries};
    (void)tracee->Detach();
    if (std::chrono::steady_clock::now() + backoff > deadline) {
      const StackHit& h = **hit;
      return Fail(ErrorCode::kRefused,
                  "function {}: thread {} of pid {} still {} {} after {} ms ({} retries) (rule: no "
                  "thread may run in or return into replaced code)",
                  h.name, h.tid, pid, h.frame == 0 ? "runs at" : "returns to", h.address,
                  timeout.count(), retries);
    }
    ++retries;
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::microseconds(50000));
  }
}

}  // namespace patchlab::patchcore::internal

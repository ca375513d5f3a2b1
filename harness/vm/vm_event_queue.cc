#include "harness/vm/vm_event_queue.h"

#include <algorithm>

namespace patchlab::harness {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

VmEventQueue::VmEventQueue(Collect collect, Idle idle, milliseconds max_idle)
    : collect_(std::move(collect)), idle_(std::move(idle)), max_idle_(max_idle) {}

std::vector<VmEvent> VmEventQueue::Poll(milliseconds heartbeat_threshold) {
  std::lock_guard lock(mu_);
  collect_(heartbeat_threshold, queued_);
  std::vector<VmEvent> out(queued_.begin(), queued_.end());
  queued_.clear();
  return out;
}

std::optional<VmEvent> VmEventQueue::Wait(milliseconds timeout, milliseconds heartbeat_threshold) {
  Clock::time_point deadline = Clock::now() + timeout;
  while (true) {
    {
      std::lock_guard lock(mu_);
      collect_(heartbeat_threshold, queued_);
      if (!queued_.empty()) {
        VmEvent e = std::move(queued_.front());
        queued_.pop_front();
        return e;
      }
    }
    Clock::time_point now = Clock::now();
    if (now >= deadline) return std::nullopt;
    // Rounded up, so that the last slice reaches the deadline.
    idle_(std::min(max_idle_,
                   std::chrono::duration_cast<milliseconds>(deadline - now) + milliseconds(1)));
  }
}

void VmEventQueue::WithLock(const std::function<void(std::deque<VmEvent>&)>& f) {
  std::lock_guard lock(mu_);
  f(queued_);
}

}  // namespace patchlab::harness

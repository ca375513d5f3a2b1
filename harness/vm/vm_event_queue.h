// VmEventQueue: the events of one Vm not handed out yet, and the wait for the
// next one; what Vm::PollEvents and Vm::WaitForEvent do for every backend.
//
// A Vm gives the queue two functions:
//   collect(heartbeat_threshold, queue)  checks every crash source now and
//       appends the new events to `queue`. It runs with the queue's lock held,
//       so the Vm's own "already reported" flags need no lock of their own as
//       long as every other access to them goes through WithLock.
//   idle(up_to)  blocks up to `up_to` for something that may make an event
//       (the QEMU process's pidfd, a libvirt domain event), without the lock.
//       It may hand what it found to the queue through WithLock.
//
// Thread-safety: thread-safe. collect and idle are called from the threads
// that call Poll and Wait.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <vector>

#include "harness/vm/vm_backend.h"

namespace patchlab::harness {

class VmEventQueue {
 public:
  using Collect = std::function<void(std::chrono::milliseconds heartbeat_threshold,
                                     std::deque<VmEvent>& queue)>;
  using Idle = std::function<void(std::chrono::milliseconds up_to)>;

  // `max_idle`: the longest single idle() call, so that sources idle() does
  // not watch (the agent's heartbeat, a closed channel) are checked that often.
  VmEventQueue(Collect collect, Idle idle, std::chrono::milliseconds max_idle);

  // Collects, then returns every queued event, oldest first. Never blocks for long.
  std::vector<VmEvent> Poll(std::chrono::milliseconds heartbeat_threshold);
  // Collects until an event is queued and returns the oldest; nullopt when
  // `timeout` passed without one.
  std::optional<VmEvent> Wait(std::chrono::milliseconds timeout,
                              std::chrono::milliseconds heartbeat_threshold);
  // Runs `f` on the queue with its lock held: for events found outside
  // collect and for the state collect reads.
  void WithLock(const std::function<void(std::deque<VmEvent>& queue)>& f);

 private:
  Collect collect_;
  Idle idle_;
  std::chrono::milliseconds max_idle_;
  std::mutex mu_;
  std::deque<VmEvent> queued_;  // guarded by mu_
};

}  // namespace patchlab::harness

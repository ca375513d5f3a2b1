// VmEventQueue, the event queue of both VM kinds, driven by made-up sources:
// what collect finds comes out oldest first, once; what idle finds wakes a
// waiter; a wait with nothing to find ends empty-handed.
#include "harness/vm/vm_event_queue.h"

#include <gtest/gtest.h>

#include <atomic>

namespace patchlab::harness {
namespace {

using std::chrono::milliseconds;

VmEvent Event(VmEventKind kind, std::string detail) {
  return {kind, std::move(detail), std::chrono::steady_clock::now()};
}

TEST(VmEventQueue, PollHandsOutWhatCollectFoundOnceOldestFirst) {
  int collects = 0;
  milliseconds threshold_seen{0};
  VmEventQueue queue(
      [&](milliseconds threshold, std::deque<VmEvent>& q) {
        threshold_seen = threshold;
        if (++collects == 1) {
          q.push_back(Event(VmEventKind::kGuestPanicked, "first"));
          q.push_back(Event(VmEventKind::kVmExited, "second"));
        }
      },
      [](milliseconds) {}, milliseconds(10));
  std::vector<VmEvent> events = queue.Poll(milliseconds(1234));
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].detail, "first");
  EXPECT_EQ(events[1].detail, "second");
  EXPECT_EQ(threshold_seen, milliseconds(1234));
  EXPECT_TRUE(queue.Poll(milliseconds(1)).empty()) << "handed out once";
}

TEST(VmEventQueue, WaitReturnsOneEventAtATime) {
  VmEventQueue queue([](milliseconds, std::deque<VmEvent>&) {}, [](milliseconds) {},
                     milliseconds(10));
  queue.WithLock([](std::deque<VmEvent>& q) {
    q.push_back(Event(VmEventKind::kHeartbeatLost, "a"));
    q.push_back(Event(VmEventKind::kAgentGone, "b"));
  });
  auto a = queue.Wait(milliseconds(0), milliseconds(1));
  ASSERT_TRUE(a);
  EXPECT_EQ(a->detail, "a");
  auto b = queue.Wait(milliseconds(0), milliseconds(1));
  ASSERT_TRUE(b);
  EXPECT_EQ(b->detail, "b");
}

// The libvirt way: idle receives a domain event and hands it over.
TEST(VmEventQueue, WhatIdleFindsWakesTheWaiter) {
  std::atomic<int> idles{0};
  VmEventQueue* self = nullptr;
  VmEventQueue queue([](milliseconds, std::deque<VmEvent>&) {},
                     [&](milliseconds up_to) {
                       EXPECT_LE(up_to, milliseconds(5)) << "never idles longer than max_idle";
                       if (++idles == 3) {
                         self->WithLock([](std::deque<VmEvent>& q) {
                           q.push_back(Event(VmEventKind::kGuestPanicked, "from idle"));
                         });
                       }
                     },
                     milliseconds(5));
  self = &queue;
  // A long timeout: the event, not the clock, ends the wait.
  auto e = queue.Wait(milliseconds(600000), milliseconds(1));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->detail, "from idle");
  EXPECT_EQ(idles, 3);
}

TEST(VmEventQueue, WaitWithNothingToFindEndsEmptyHanded) {
  int idles = 0;
  VmEventQueue queue([](milliseconds, std::deque<VmEvent>&) {}, [&](milliseconds) { ++idles; },
                     milliseconds(1));
  EXPECT_FALSE(queue.Wait(milliseconds(0), milliseconds(1)));
  EXPECT_EQ(idles, 0) << "a zero timeout collects once and does not idle";
}

}  // namespace
}  // namespace patchlab::harness

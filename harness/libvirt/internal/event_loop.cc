#include "harness/libvirt/internal/event_loop.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

#include "base/log.h"

namespace patchlab::harness::libvirt_internal {
namespace {

void IgnoreVirError(void*, virErrorPtr) {}

std::atomic<std::thread::id> g_loop_thread{};

// One RunOnEventLoop call: the function, and the caller waiting for it.
struct LoopCall {
  const std::function<void()>* fn;
  int timer = -1;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
};

void RunLoopCall(int timer, void* opaque) {
  auto* call = static_cast<LoopCall*>(opaque);
  // A timeout repeats until removed; this call runs once.
  virEventRemoveTimeout(timer);
  (*call->fn)();
  std::lock_guard lock(call->mu);
  call->done = true;
  call->cv.notify_all();
}

}  // namespace

Status EnsureEventLoop() {
  static std::once_flag once;
  static std::string failure;
  std::call_once(once, [] {
    virSetErrorFunc(nullptr, IgnoreVirError);
    if (virInitialize() < 0) {
      failure = "virInitialize failed";
      return;
    }
    if (virEventRegisterDefaultImpl() < 0) {
      failure = "virEventRegisterDefaultImpl failed";
      return;
    }
    // The loop runs for the life of the process: connections may be closed at
    // exit by static destructors, and their callbacks need the loop until then.
    std::thread loop([] {
      while (true) {
        if (virEventRunDefaultImpl() < 0) {
          Log("libvirt")->error("libvirt event loop: {}", virGetLastErrorMessage());
        }
      }
    });
    g_loop_thread = loop.get_id();
    loop.detach();
  });
  if (!failure.empty()) return Fail(ErrorCode::kInfra, "libvirt: {}", failure);
  return {};
}

bool OnEventLoopThread() { return g_loop_thread.load() == std::this_thread::get_id(); }

void RunOnEventLoop(const std::function<void()>& fn) {
  if (OnEventLoopThread()) {
    fn();
    return;
  }
  LoopCall call;
  call.fn = &fn;
  // A zero timeout fires on the loop's next pass (adding it wakes the loop).
  // `call` lives on this stack until done: the timer is removed before that.
  call.timer = virEventAddTimeout(0, RunLoopCall, &call, nullptr);
  if (call.timer < 0) {
    Log("libvirt")->critical("libvirt event loop: cannot add a timeout: {}",
                             virGetLastErrorMessage());
    std::abort();
  }
  std::unique_lock lock(call.mu);
  call.cv.wait(lock, [&] { return call.done; });
}

}  // namespace patchlab::harness::libvirt_internal

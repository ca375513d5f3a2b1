#include "harness/libvirt/internal/event_loop.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <mutex>
#include <string>
#include <thread>

#include "base/log.h"

namespace patchlab::harness::libvirt_internal {
namespace {

void IgnoreVirError(void*, virErrorPtr) {}

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
    std::thread([] {
      while (true) {
        if (virEventRunDefaultImpl() < 0) {
          Log("libvirt")->error("libvirt event loop: {}", virGetLastErrorMessage());
        }
      }
    }).detach();
  });
  if (!failure.empty()) return Fail(ErrorCode::kInfra, "libvirt: {}", failure);
  return {};
}

}  // namespace patchlab::harness::libvirt_internal

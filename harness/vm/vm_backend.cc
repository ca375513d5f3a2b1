#include "harness/vm/vm_backend.h"

#include <cstdlib>

namespace patchlab::harness {

std::string_view AcceleratorName(Accelerator accel) {
  switch (accel) {
    case Accelerator::kKvm:
      return "kvm";
    case Accelerator::kTcg:
      return "tcg";
  }
  std::abort();
}

std::string_view VmEventKindName(VmEventKind kind) {
  switch (kind) {
    case VmEventKind::kGuestPanicked:
      return "guest-panicked";
    case VmEventKind::kVmExited:
      return "vm-exited";
    case VmEventKind::kAgentGone:
      return "agent-gone";
    case VmEventKind::kHeartbeatLost:
      return "heartbeat-lost";
  }
  std::abort();
}

}  // namespace patchlab::harness

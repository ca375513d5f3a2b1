// AttachBlocker: why this patcher cannot reach a process, in words a user
// can act on: another tracer holds it, it is a zombie, it lives in a user
// namespace where this patcher has no ptrace rights, or the kernel's ptrace
// access check said no (another user, no CAP_SYS_PTRACE).
//
// Thread-safety: reads /proc only; safe from any thread.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

namespace patchlab::patchcore {

struct AttachBlocker {
  bool ended = false;  // a zombie: nothing left to patch
  std::string reason;
};

// What stands in the way before trying: another tracer, or a zombie.
// nullopt when nothing is known to.
std::optional<AttachBlocker> KnownAttachBlocker(pid_t pid);

// The reason after an attempt failed with `err` (EPERM or EACCES from
// ptrace, /proc/PID/mem or /proc/PID/maps): a known blocker, else another
// user namespace, else the access check.
std::string AttachBlockerAfter(pid_t pid, int err);

}  // namespace patchlab::patchcore

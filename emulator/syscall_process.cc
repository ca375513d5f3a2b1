// The SyscallLayer's answers about signals, scheduling and ids
// (syscalls.h), for a process run by user 1000 that leads its own session
// and process group and has changed nothing yet: every signal's
// disposition the default, no alternate signal stack, SCHED_OTHER at nice
// 0. rt_sigaction and sigaltstack change what later calls in the same run
// see; the checks come in the kernel's order (kernel/signal.c,
// kernel/sched/syscalls.c, kernel/sys.c).
#include <sched.h>
#include <sys/resource.h>
#include <unicorn/unicorn.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include "emulator/internal/guest_abi.h"
#include "emulator/internal/sandbox_live.h"
#include "emulator/sandbox.h"
#include "emulator/syscalls.h"

namespace patchlab::emulator {
namespace {

constexpr uint64_t kPid = SyscallLayer::kProcessId;
constexpr uint32_t kUid = 1000;
constexpr uint32_t kNoId = 0xffffffff;  // (uid_t) -1: leave as it is
// The values <csignal> lacks (the kernel's SA_EXPOSE_TAGBITS, SA_RESTORER,
// SS_AUTODISARM; <linux/signal.h> clashes with it) or gives as a call
// (MINSIGSTKSZ is sysconf(_SC_MINSIGSTKSZ) under _GNU_SOURCE): x86-64's.
constexpr uint64_t kSaExposeTagbits = 0x800, kSaRestorer = 0x04000000;
constexpr uint64_t kSsAutodisarm = 1u << 31;
constexpr uint64_t kMinSigStackSize = 2048;
constexpr uint64_t kSsOnstack = SS_ONSTACK, kSsDisable = SS_DISABLE;
// The sa_flags bits Linux keeps (UAPI_SA_FLAGS on x86).
constexpr uint64_t kUapiSaFlags = SA_NOCLDSTOP | SA_NOCLDWAIT | SA_SIGINFO | kSaExposeTagbits |
                                  kSaRestorer | SA_ONSTACK | SA_RESTART | SA_NODEFER | SA_RESETHAND;

uint64_t Errno(int e) { return static_cast<uint64_t>(-static_cast<int64_t>(e)); }
bool IsSelf(uint64_t pid) { return static_cast<int32_t>(pid) == 0 || pid == kPid; }

}  // namespace

void SyscallLayer::ResetProcessState() {
  for (SigactionState& a : actions_) a = SigactionState{};
  std::memset(altstack_, 0, sizeof altstack_);
  for (TimerState& t : timers_) t = TimerState{};
  process_state_dirty_ = false;
}

std::optional<uint64_t> SyscallLayer::SigAction(const Call& c) {
  const int64_t sig = static_cast<int32_t>(c.a[0]);
  SigactionState act{};
  uint64_t ret = 0;
  if (c.a[3] != 8) {
    ret = Errno(EINVAL);
  } else if (const uint8_t* p = c.a[1] == 0 ? nullptr : sandbox_.HostPtr(c.a[1], 32, UC_PROT_READ);
             c.a[1] != 0 && p == nullptr) {
    ret = Errno(EFAULT);
  } else if (sig < 1 || sig > 64 || (p != nullptr && (sig == SIGKILL || sig == SIGSTOP))) {
    ret = Errno(EINVAL);
  } else {
    const SigactionState old = actions_[sig - 1];
    if (p != nullptr) {
      std::memcpy(&act, p, 32);
      act.flags &= kUapiSaFlags;
      act.mask &= ~((1ull << (SIGKILL - 1)) | (1ull << (SIGSTOP - 1)));
      actions_[sig - 1] = act;
      process_state_dirty_ = true;
    }
    if (c.a[2] != 0) {
      uint8_t* out = Writable(c.a[2], 32);
      if (out == nullptr)
        ret = Errno(EFAULT);
      else
        std::memcpy(out, &old, 32);
    }
  }
  Record(c, {c.a[0], c.a[1] != 0, act.handler, act.flags, act.mask}, ret);
  return ret;
}

std::optional<uint64_t> SyscallLayer::SigAltStack(const Call& c) {
  uint64_t rsp = 0;
  uc_reg_read(sandbox_.uc_, UC_X86_REG_RSP, &rsp);
  const bool on_stack = altstack_[2] != 0 && rsp - altstack_[0] < altstack_[2];
  const uint64_t old_flags =
      altstack_[2] == 0 ? kSsDisable : (on_stack ? kSsOnstack : 0) | (altstack_[1] & kSsAutodisarm);
  const uint64_t old[3] = {altstack_[0], old_flags, altstack_[2]};
  uint64_t ret = 0;
  uint64_t set[3] = {};
  if (c.a[0] != 0) {
    const uint8_t* p = sandbox_.HostPtr(c.a[0], 24, UC_PROT_READ);
    if (p == nullptr) {
      ret = Errno(EFAULT);
    } else {
      std::memcpy(&set[0], p, 8);
      uint32_t flags = 0;
      std::memcpy(&flags, p + 8, 4);
      set[1] = flags;
      std::memcpy(&set[2], p + 16, 8);
      const uint64_t mode = flags & ~kSsAutodisarm;
      if (on_stack) {
        ret = Errno(EPERM);
      } else if (mode != kSsDisable && mode != kSsOnstack && mode != 0) {
        ret = Errno(EINVAL);
      } else if (mode != kSsDisable && set[2] < kMinSigStackSize) {
        ret = Errno(ENOMEM);
      } else {
        if (mode == kSsDisable) set[0] = set[2] = 0;
        std::memcpy(altstack_, set, sizeof set);
        process_state_dirty_ = true;
      }
    }
  }
  if (ret == 0 && c.a[1] != 0) {
    uint8_t* out = Writable(c.a[1], 24);
    if (out == nullptr) {
      ret = Errno(EFAULT);
    } else {
      std::memset(out, 0, 24);
      std::memcpy(out, &old[0], 8);
      const uint32_t flags = static_cast<uint32_t>(old[1]);
      std::memcpy(out + 8, &flags, 4);
      std::memcpy(out + 16, &old[2], 8);
    }
  }
  Record(c, {c.a[0] != 0, set[1], set[2]}, ret);
  return ret;
}

std::optional<uint64_t> SyscallLayer::SetIds(const Call& c) {
  // An unprivileged process may only set its ids to the ones it has (all
  // 1000); -1 leaves one as it is. setuid and setgid take no -1.
  const int n = c.nr == SYS_setuid || c.nr == SYS_setgid         ? 1
                : c.nr == SYS_setresuid || c.nr == SYS_setresgid ? 3
                                                                 : 2;
  uint64_t ret = 0;
  for (int i = 0; i < n; ++i) {
    const uint32_t id = static_cast<uint32_t>(c.a[i]);
    if (id == kNoId && n == 1) ret = Errno(EINVAL);
    if (ret == 0 && id != kNoId && id != kUid) ret = Errno(EPERM);
  }
  Record(c, {c.a[0], c.a[1], c.a[2]}, ret);
  return ret;
}

std::optional<uint64_t> SyscallLayer::ProcessCall(const Call& c) {
  switch (c.nr) {
    case SYS_rt_sigaction:
      return SigAction(c);
    case SYS_sigaltstack:
      return SigAltStack(c);
    case SYS_setuid:
    case SYS_setgid:
    case SYS_setreuid:
    case SYS_setregid:
    case SYS_setresuid:
    case SYS_setresgid:
      return SetIds(c);
    case SYS_getresuid:
    case SYS_getresgid:
      for (int i = 0; i < 3; ++i) {
        uint8_t* p = Writable(c.a[i], 4);
        if (p == nullptr) return Errno(EFAULT);
        std::memcpy(p, &kUid, 4);
      }
      return 0;
    case SYS_getpgrp:
      return kPid;
    case SYS_getsid:
    case SYS_getpgid:
      return IsSelf(c.a[0]) ? kPid : Errno(ESRCH);
    case SYS_sched_getscheduler:
      if (static_cast<int32_t>(c.a[0]) < 0) return Errno(EINVAL);
      return IsSelf(c.a[0]) ? SCHED_OTHER : Errno(ESRCH);
    case SYS_sched_getparam: {
      if (c.a[1] == 0 || static_cast<int32_t>(c.a[0]) < 0) return Errno(EINVAL);
      if (!IsSelf(c.a[0])) return Errno(ESRCH);
      uint8_t* p = Writable(c.a[1], 4);
      if (p == nullptr) return Errno(EFAULT);
      std::memset(p, 0, 4);
      return 0;
    }
    case SYS_getpriority: {
      // The kernel answers 20 - nice; PRIO_USER: the processes of a uid.
      const uint64_t which = static_cast<uint32_t>(c.a[0]);
      if (which > PRIO_USER) return Errno(EINVAL);
      const bool self = which == PRIO_USER ? static_cast<uint32_t>(c.a[1]) == 0 ||
                                                 static_cast<uint32_t>(c.a[1]) == kUid
                                           : IsSelf(static_cast<uint32_t>(c.a[1]));
      return self ? 20 : Errno(ESRCH);
    }
    default:
      return std::nullopt;
  }
}

}  // namespace patchlab::emulator

#include "emulator/syscalls.h"

#include <linux/futex.h>
#include <sched.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unicorn/unicorn.h>

#include <cerrno>
#include <climits>
#include <csignal>
#include <cstring>
#include <ctime>

#include "emulator/internal/guest_abi.h"
#include "emulator/internal/sandbox_live.h"
#include "emulator/layout.h"
#include "emulator/sandbox.h"

namespace patchlab::emulator {
namespace {

struct NamedSyscall {
  uint64_t nr;
  const char* name;
};

// Generated from the kernel headers at configure time (emulator/CMakeLists.txt).
constexpr NamedSyscall kSyscallNames[] = {
#include "syscall_names.inc"
    {~0ull, ""},  // the headers may have been missing
};

constexpr uint64_t kPid = SyscallLayer::kProcessId;
constexpr uint64_t kRealtimeEpoch = 1767225600;  // 2026-01-01 00:00:00 UTC
constexpr uint64_t kMonotonicEpoch = 100000;     // seconds since boot

constexpr uint64_t kUid = 1000;
// CLOCK_SGI_CYCLE, retired in Linux 4.20: a gap no header names.
constexpr uint64_t kClockSgiCycle = 10;

uint64_t Errno(int e) { return static_cast<uint64_t>(-static_cast<int64_t>(e)); }

uint64_t SplitMix(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

std::string SyscallName(uint64_t nr) {
  for (const NamedSyscall& s : kSyscallNames) {
    if (s.nr == nr) return s.name;
  }
  return fmt::format("#{}", nr);
}

uint8_t* SyscallLayer::Writable(uint64_t addr, uint64_t len) {
  if (len == 0) return reinterpret_cast<uint8_t*>(1);  // never dereferenced
  uint8_t* host = sandbox_.HostPtr(addr, len, UC_PROT_WRITE);
  if (host != nullptr) sandbox_.NoteHostWrite(addr, len);
  return host;
}

uint64_t SyscallLayer::ClockGettime(const Call& c) {
  const uint64_t clock = c.a[0];
  // CLOCK_REALTIME and its _COARSE and _ALARM forms, TAI: the wall clock;
  // the monotonic, boot-time and CPU-time clocks count from "boot".
  const bool wall = clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE ||
                    clock == CLOCK_REALTIME_ALARM || clock == CLOCK_TAI;
  const bool other = clock <= CLOCK_BOOTTIME || clock == CLOCK_BOOTTIME_ALARM;
  if (!wall && !other) return Errno(EINVAL);
  uint8_t* ts = Writable(c.a[1], 16);
  if (ts == nullptr) return Errno(EFAULT);
  const uint64_t us = Tick();
  const uint64_t sec = (wall ? kRealtimeEpoch : kMonotonicEpoch) + us / 1000000;
  const uint64_t nsec = us % 1000000 * 1000;
  std::memcpy(ts, &sec, 8);
  std::memcpy(ts + 8, &nsec, 8);
  return 0;
}

uint64_t SyscallLayer::Gettimeofday(const Call& c) {
  const uint64_t us = Tick();
  if (c.a[0] != 0) {
    uint8_t* tv = Writable(c.a[0], 16);
    if (tv == nullptr) return Errno(EFAULT);
    const uint64_t sec = kRealtimeEpoch + us / 1000000, usec = us % 1000000;
    std::memcpy(tv, &sec, 8);
    std::memcpy(tv + 8, &usec, 8);
  }
  if (c.a[1] != 0) {  // struct timezone: UTC
    uint8_t* tz = Writable(c.a[1], 8);
    if (tz == nullptr) return Errno(EFAULT);
    std::memset(tz, 0, 8);
  }
  return 0;
}

uint64_t SyscallLayer::Time(const Call& c) {
  const uint64_t sec = kRealtimeEpoch + Tick() / 1000000;
  if (c.a[0] != 0) {
    uint8_t* t = Writable(c.a[0], 8);
    if (t == nullptr) return Errno(EFAULT);
    std::memcpy(t, &sec, 8);
  }
  return sec;
}

uint64_t SyscallLayer::Getrandom(const Call& c) {
  constexpr uint64_t kKnownFlags = GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE;
  const uint64_t len = std::min<uint64_t>(c.a[1], 0x1ffffff);  // the kernel's cap per call
  uint64_t ret = 0;
  if ((c.a[2] & ~kKnownFlags) != 0) {
    ret = Errno(EINVAL);
  } else if (uint8_t* buf = Writable(c.a[0], len); buf == nullptr) {
    ret = Errno(EFAULT);
  } else {
    for (uint64_t i = 0; i < len; i += 8) {
      const uint64_t word = SplitMix(random_state_);
      std::memcpy(buf + i, &word, std::min<uint64_t>(8, len - i));
    }
    ret = len;
  }
  sandbox_.live().out.calls.push_back(StubCall{"getrandom", {c.a[1], c.a[2]}, ret, {}});
  return ret;
}

uint64_t SyscallLayer::Write(const Call& c) {
  const uint64_t len = c.a[2];
  const uint8_t* buf = len == 0 ? nullptr : sandbox_.HostPtr(c.a[1], len, UC_PROT_READ);
  const uint64_t ret = len != 0 && buf == nullptr ? Errno(EFAULT) : len;
  std::string data = buf == nullptr ? std::string() : std::string(buf, buf + len);
  sandbox_.live().out.calls.push_back(StubCall{"write", {c.a[0], len}, ret, std::move(data)});
  return ret;
}

uint64_t SyscallLayer::Writev(const Call& c) {
  // The iovecs' bytes, gathered as the kernel writes them.
  if (c.a[2] > IOV_MAX) return Errno(EINVAL);
  const uint8_t* iov = c.a[2] == 0 ? nullptr : sandbox_.HostPtr(c.a[1], c.a[2] * 16, UC_PROT_READ);
  std::string data;
  uint64_t ret = 0;
  if (c.a[2] != 0 && iov == nullptr) {
    ret = Errno(EFAULT);
  } else {
    for (uint64_t i = 0; i < c.a[2]; ++i) {
      uint64_t base = 0, len = 0;
      std::memcpy(&base, iov + i * 16, 8);
      std::memcpy(&len, iov + i * 16 + 8, 8);
      const uint8_t* buf = len == 0 ? nullptr : sandbox_.HostPtr(base, len, UC_PROT_READ);
      if (len != 0 && buf == nullptr) {
        ret = Errno(EFAULT);
        break;
      }
      if (buf != nullptr) data.append(buf, buf + len);
    }
    if (ret == 0) ret = data.size();
  }
  sandbox_.live().out.calls.push_back(StubCall{"writev", {c.a[0], c.a[2]}, ret, std::move(data)});
  return ret;
}

uint64_t SyscallLayer::SigProcMask(const Call& c) {
  const uint64_t how = c.a[0];
  if (c.a[3] != 8) return Errno(EINVAL);  // sigsetsize
  uint64_t set = 0;
  if (c.a[1] != 0) {
    const uint8_t* p = sandbox_.HostPtr(c.a[1], 8, UC_PROT_READ);
    if (p == nullptr) return Errno(EFAULT);
    std::memcpy(&set, p, 8);
    if (how > SIG_SETMASK) return Errno(EINVAL);
  }
  if (c.a[2] != 0) {
    uint8_t* old = Writable(c.a[2], 8);
    if (old == nullptr) return Errno(EFAULT);
    std::memcpy(old, &signal_mask_, 8);
  }
  // SIGKILL and SIGSTOP can never be blocked.
  constexpr uint64_t kUnblockable = (1ull << (SIGKILL - 1)) | (1ull << (SIGSTOP - 1));
  if (c.a[1] != 0) {
    if (how == SIG_BLOCK) signal_mask_ |= set;
    if (how == SIG_UNBLOCK) signal_mask_ &= ~set;
    if (how == SIG_SETMASK) signal_mask_ = set;
    signal_mask_ &= ~kUnblockable;
  }
  return 0;
}

std::optional<uint64_t> SyscallLayer::Futex(const Call& c) {
  // As kernel/futex/syscalls.c orders its checks. A process with one
  // thread: a wake finds no waiter, and a wait that is not refused sleeps
  // until its timeout (the clock jumps there) or forever (inconclusive).
  constexpr uint64_t kPrivate = FUTEX_PRIVATE_FLAG, kClockRealtime = FUTEX_CLOCK_REALTIME;
  const uint64_t cmd = c.a[1] & ~(kPrivate | kClockRealtime);
  const bool known = cmd <= FUTEX_LOCK_PI2 && cmd != FUTEX_FD;  // FUTEX_FD is gone
  if (!known) return Errno(ENOSYS);
  if ((c.a[1] & kClockRealtime) != 0 && cmd != FUTEX_WAIT_BITSET && cmd != FUTEX_WAIT_REQUEUE_PI &&
      cmd != FUTEX_LOCK_PI2)
    return Errno(ENOSYS);
  if (cmd != FUTEX_WAIT && cmd != FUTEX_WAKE && cmd != FUTEX_WAIT_BITSET &&
      cmd != FUTEX_WAKE_BITSET)
    return std::nullopt;  // requeueing, wake-op, priority inheritance: not modelled
  const bool bitset = cmd == FUTEX_WAIT_BITSET || cmd == FUTEX_WAKE_BITSET;
  if (bitset && static_cast<uint32_t>(c.a[5]) == 0) return Errno(EINVAL);
  if (c.a[0] % 4 != 0) return Errno(EINVAL);
  const uint8_t* word = sandbox_.HostPtr(c.a[0], 4, UC_PROT_READ);
  // A shared futex's key is its page: an unmapped one faults (-EFAULT); a
  // private wake never touches the word.
  if (cmd == FUTEX_WAKE || cmd == FUTEX_WAKE_BITSET)
    return word == nullptr && (c.a[1] & kPrivate) == 0 ? Errno(EFAULT) : 0;
  std::optional<uint64_t> deadline;  // in the clock's microseconds
  if (c.a[3] != 0) {
    const uint8_t* ts = sandbox_.HostPtr(c.a[3], 16, UC_PROT_READ);
    if (ts == nullptr) return Errno(EFAULT);
    int64_t t[2];
    std::memcpy(t, ts, 16);
    if (t[0] < 0 || t[1] < 0 || t[1] >= 1000000000) return Errno(EINVAL);
    const uint64_t us = std::min<uint64_t>(t[0], 1ull << 40) * 1000000 + (t[1] + 999) / 1000;
    if (!bitset) {
      deadline = clock_us_ + us;  // FUTEX_WAIT: relative
    } else {
      // Absolute, on CLOCK_MONOTONIC or (with the flag) CLOCK_REALTIME.
      const uint64_t epoch =
          ((c.a[1] & kClockRealtime) != 0 ? kRealtimeEpoch : kMonotonicEpoch) * 1000000;
      deadline = us > epoch ? us - epoch : 0;
    }
  }
  if (word == nullptr) return Errno(EFAULT);
  uint32_t v = 0;
  std::memcpy(&v, word, 4);
  if (v != static_cast<uint32_t>(c.a[2])) return Errno(EAGAIN);
  if (!deadline) return std::nullopt;  // it would sleep with no one to wake it
  clock_us_ = std::max(clock_us_, *deadline);
  return Errno(ETIMEDOUT);
}

std::optional<uint64_t> SyscallLayer::Sleep(const Call& c) {
  // nanosleep(req, rem) and clock_nanosleep(clock, flags, req, rem): the
  // clock jumps to the end of the sleep; no signal interrupts it.
  const bool nano = c.nr == SYS_nanosleep;
  const uint64_t clock = nano ? CLOCK_MONOTONIC : static_cast<uint32_t>(c.a[0]);
  const bool absolute = !nano && (c.a[1] & TIMER_ABSTIME) != 0;
  const uint8_t* ts = sandbox_.HostPtr(c.a[nano ? 0 : 2], 16, UC_PROT_READ);
  // CLOCK_REALTIME, _MONOTONIC, _BOOTTIME, _TAI sleep; the raw and coarse
  // clocks cannot (-EOPNOTSUPP), nor this thread's CPU clock (-EINVAL);
  // the process's CPU clock and the alarm clocks are not modelled.
  if (!nano && clock != CLOCK_REALTIME && clock != CLOCK_MONOTONIC && clock != CLOCK_BOOTTIME &&
      clock != CLOCK_TAI) {
    if (clock >= CLOCK_MONOTONIC_RAW && clock <= CLOCK_MONOTONIC_COARSE) return Errno(EOPNOTSUPP);
    if (clock == CLOCK_THREAD_CPUTIME_ID || clock == kClockSgiCycle ||
        (clock > CLOCK_TAI && clock < 0x80000000))
      return Errno(EINVAL);
    return std::nullopt;
  }
  if (ts == nullptr) return Errno(EFAULT);
  int64_t t[2];
  std::memcpy(t, ts, 16);
  if (t[0] < 0 || t[1] < 0 || t[1] >= 1000000000) return Errno(EINVAL);
  const uint64_t us = std::min<uint64_t>(t[0], 1ull << 40) * 1000000 + (t[1] + 999) / 1000;
  if (absolute) {
    const uint64_t epoch =
        (clock == CLOCK_REALTIME || clock == CLOCK_TAI ? kRealtimeEpoch : kMonotonicEpoch) *
        1000000;
    clock_us_ = std::max(clock_us_, us > epoch ? us - epoch : 0);
  } else {
    clock_us_ += us;
  }
  Record(c, {clock, absolute, static_cast<uint64_t>(t[0]), static_cast<uint64_t>(t[1])}, 0);
  return 0;
}

uint64_t SyscallLayer::GetLimit(const Call& c) {
  if (c.a[0] != 0 && c.a[0] != kPid) return Errno(ESRCH);
  if (c.a[2] != 0) return Errno(EPERM);  // setting a limit: not this sandbox's to grant
  if (c.a[1] >= RLIM_NLIMITS) return Errno(EINVAL);
  uint64_t soft = RLIM_INFINITY, hard = RLIM_INFINITY;
  if (c.a[1] == RLIMIT_STACK) soft = 8 << 20;
  if (c.a[1] == RLIMIT_CORE) soft = 0;
  if (c.a[1] == RLIMIT_NOFILE) {
    soft = 1024;
    hard = 1048576;
  }
  if (c.a[1] == RLIMIT_MEMLOCK) soft = hard = 8 << 20;
  if (c.a[1] == RLIMIT_MSGQUEUE) soft = hard = 819200;
  if (c.a[3] != 0) {
    uint8_t* out = Writable(c.a[3], 16);
    if (out == nullptr) return Errno(EFAULT);
    std::memcpy(out, &soft, 8);
    std::memcpy(out + 8, &hard, 8);
  }
  return 0;
}

uint64_t SyscallLayer::ClockGetres(const Call& c) {
  const uint64_t clock = c.a[0];
  if (clock > CLOCK_TAI || clock == kClockSgiCycle) return Errno(EINVAL);
  if (c.a[1] != 0) {
    uint8_t* ts = Writable(c.a[1], 16);
    if (ts == nullptr) return Errno(EFAULT);
    const uint64_t res[2] = {0, 1};
    std::memcpy(ts, res, 16);
  }
  return 0;
}

std::optional<uint64_t> SyscallLayer::AboutTheProcess(const Call& c) {
  switch (c.nr) {
    case SYS_getuid:
    case SYS_geteuid:
    case SYS_getgid:
    case SYS_getegid:
      return kUid;
    case SYS_getppid:
      return 1;
    case SYS_sched_yield:
      return 0;
    case SYS_sched_get_priority_max:
    case SYS_sched_get_priority_min:
      // The real-time policies: 1..99; the others: 0.
      if (c.a[0] == SCHED_FIFO || c.a[0] == SCHED_RR)
        return c.nr == SYS_sched_get_priority_max ? 99 : 1;
      if (c.a[0] == SCHED_OTHER || c.a[0] == SCHED_BATCH || c.a[0] == SCHED_IDLE ||
          c.a[0] == SCHED_DEADLINE)
        return 0;
      return Errno(EINVAL);
    case SYS_rt_sigprocmask:
      return SigProcMask(c);
    case SYS_clock_getres:
      return ClockGetres(c);
    case SYS_prlimit64:
      return GetLimit(c);
    default:
      return std::nullopt;
  }
}

uint64_t SyscallLayer::Deny(const Call& c) {
  // Stack addresses differ between two builds' frames: masked, so that
  // only what the call says is compared.
  std::vector<uint64_t> args;
  for (uint64_t a : c.a) args.push_back(a - (kStackTop - kStackBytes) < kStackBytes ? 0x57ac4 : a);
  sandbox_.live().out.calls.push_back(
      StubCall{fmt::format("syscall {}", SyscallName(c.nr)), std::move(args), Errno(ENOSYS), {}});
  return Errno(ENOSYS);
}

void SyscallLayer::OnSyscall(uc_struct* uc) {
  Call c{};
  uint64_t rip = 0, rflags = 0;
  int ids[9] = {UC_X86_REG_RAX, UC_X86_REG_RDI, UC_X86_REG_RSI, UC_X86_REG_RDX,   UC_X86_REG_R10,
                UC_X86_REG_R8,  UC_X86_REG_R9,  UC_X86_REG_RIP, UC_X86_REG_EFLAGS};
  void* vals[9] = {&c.nr, &c.a[0], &c.a[1], &c.a[2], &c.a[3], &c.a[4], &c.a[5], &rip, &rflags};
  uc_reg_read_batch(uc, ids, vals, 9);
  uint64_t ret = 0;
  switch (c.nr) {
    case SYS_getpid:
    case SYS_gettid:
      ret = kPid;
      break;
    case SYS_clock_gettime:
      ret = ClockGettime(c);
      break;
    case SYS_gettimeofday:
      ret = Gettimeofday(c);
      break;
    case SYS_time:
      ret = Time(c);
      break;
    case SYS_getrandom:
      ret = Getrandom(c);
      break;
    case SYS_write:
      ret = Write(c);
      break;
    case SYS_writev:
      ret = Writev(c);
      break;
    default: {
      std::optional<uint64_t> answer = c.nr == SYS_futex ? Futex(c) : AboutTheProcess(c);
      if (!answer && (c.nr == SYS_nanosleep || c.nr == SYS_clock_nanosleep)) answer = Sleep(c);
      if (!answer) answer = Descriptor(c);
      if (!answer) answer = SignalToSelf(c);
      if (!answer) answer = PathCall(c);
      if (!answer) answer = MemoryCall(c);
      if (!answer) answer = ProcessCall(c);
      if (!answer) answer = MachineCall(c);
      if (killed_by_ != 0) {
        sandbox_.live().Decide(
            Ending::kFault, FaultClass::kAbort, rip,
            fmt::format("signal {} sent to itself by {}", killed_by_, SyscallName(c.nr)));
        uc_emu_stop(uc);
        return;
      }
      if (answer) {
        ret = *answer;
        break;
      }
      if (deny_others_ && c.nr != SYS_futex) {
        ret = Deny(c);
        break;
      }
      sandbox_.live().Decide(
          Ending::kInconclusive, FaultClass::kNone, rip,
          fmt::format("system call {} ({}) at {:#x}", c.nr, SyscallName(c.nr), rip));
      uc_emu_stop(uc);
      return;
    }
  }
  if (AlarmDue()) {
    // SIGALRM's default ends the process without a fault class, and a
    // handler would run code the layer does not.
    sandbox_.live().Decide(
        Ending::kInconclusive, FaultClass::kNone, rip,
        fmt::format("SIGALRM from the timer would be delivered after {} at {:#x}",
                    SyscallName(c.nr), rip));
    uc_emu_stop(uc);
    return;
  }
  // As the kernel leaves them: rax the result, rcx the return address, r11 the flags.
  uint64_t next = rip + 2;
  int out_ids[3] = {UC_X86_REG_RAX, UC_X86_REG_RCX, UC_X86_REG_R11};
  void* out_vals[3] = {&ret, &next, &rflags};
  uc_reg_write_batch(uc, out_ids, out_vals, 3);
}

}  // namespace patchlab::emulator

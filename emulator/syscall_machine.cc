// The SyscallLayer's machine (syscalls.h): what uname and sysinfo say, the
// names only a privileged process may set, and the interval timers. The
// machine is a fixed one, the same on both sides and in every run: Linux
// 6.1.0 on x86_64, host and domain names never set ("(none)", as a kernel
// starts), 1 GiB of memory, up as long as the monotonic clock says, one
// process. The real-time timer (alarm, ITIMER_REAL) runs on the layer's
// clock; the CPU-time timers keep their value, as no CPU time is counted.
#include <sys/time.h>
#include <sys/utsname.h>
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

constexpr uint64_t kMonotonicEpoch = 100000;  // syscalls.cc's "boot"
constexpr uint64_t kRamBytes = 1ull << 30;
constexpr uint64_t kUtsField = sizeof(utsname::sysname);  // each of its six names
constexpr const char* kUts[6] = {"Linux",  "(none)",
                                 "6.1.0",  "#1 SMP PREEMPT_DYNAMIC Debian 6.1.0 (2026-01-01)",
                                 "x86_64", "(none)"};

uint64_t Errno(int e) { return static_cast<uint64_t>(-static_cast<int64_t>(e)); }

}  // namespace

std::optional<uint64_t> SyscallLayer::MachineCall(const Call& c) {
  switch (c.nr) {
    case SYS_uname: {
      uint8_t* u = Writable(c.a[0], 6 * kUtsField);
      if (u == nullptr) return Errno(EFAULT);
      std::memset(u, 0, 6 * kUtsField);
      for (int i = 0; i < 6; ++i) std::memcpy(u + i * kUtsField, kUts[i], std::strlen(kUts[i]));
      return 0;
    }
    case SYS_sethostname:
    case SYS_setdomainname: {
      // Needs CAP_SYS_ADMIN, checked before anything else. The name
      // recorded is cut where the kernel's limit would (__NEW_UTS_LEN).
      const uint64_t n = std::min<uint64_t>(static_cast<uint32_t>(c.a[1]), kUtsField - 1);
      const uint8_t* name = sandbox_.HostPtr(c.a[0], n, UC_PROT_READ);
      Record(c, {c.a[1]}, Errno(EPERM),
             name == nullptr ? std::string() : std::string(name, name + n));
      return Errno(EPERM);
    }
    case SYS_sysinfo: {
      uint8_t* s = Writable(c.a[0], 112);
      if (s == nullptr) return Errno(EFAULT);
      std::memset(s, 0, 112);
      const uint64_t uptime = kMonotonicEpoch + clock_us_ / 1000000;
      const uint64_t ram[2] = {kRamBytes, kRamBytes / 2};  // totalram, freeram
      const uint16_t procs = 1;
      const uint32_t unit = 1;
      std::memcpy(s, &uptime, 8);
      std::memcpy(s + 32, ram, 16);
      std::memcpy(s + 80, &procs, 2);
      std::memcpy(s + 104, &unit, 4);
      return 0;
    }
    case SYS_alarm:
    case SYS_getitimer:
    case SYS_setitimer:
      return Timer(c);
    default:
      return std::nullopt;
  }
}

namespace {

// A struct itimerval's two timevals, in microseconds.
struct TimerValue {
  uint64_t interval = 0, value = 0;
};

void WriteTimer(uint8_t* out, TimerValue t) {
  const uint64_t v[4] = {t.interval / 1000000, t.interval % 1000000, t.value / 1000000,
                         t.value % 1000000};
  std::memcpy(out, v, 32);
}

}  // namespace

SyscallLayer::TimerState SyscallLayer::ReadTimer(int which) const {
  TimerState t = timers_[which];
  if (which == ITIMER_REAL && t.value != 0) {
    // ITIMER_REAL holds its deadline on the clock; the kernel reports at
    // least 1 us left for a timer about to fire.
    t.value = t.value > clock_us_ ? t.value - clock_us_ : 1;
  }
  return t;
}

std::optional<uint64_t> SyscallLayer::Timer(const Call& c) {
  if (c.nr == SYS_alarm) {
    const TimerState old = ReadTimer(ITIMER_REAL);
    timers_[ITIMER_REAL] = {
        0, c.a[0] == 0 ? 0 : clock_us_ + static_cast<uint32_t>(c.a[0]) * 1000000ull};
    process_state_dirty_ = true;
    const uint64_t sec = old.value / 1000000, usec = old.value % 1000000;
    Record(c, {static_cast<uint32_t>(c.a[0])}, 0);
    return sec + ((sec == 0 && usec != 0) || usec >= 500000 ? 1 : 0);
  }
  const int64_t which = static_cast<int32_t>(c.a[0]);
  if (c.nr == SYS_getitimer) {
    if (which < 0 || which > ITIMER_PROF) return Errno(EINVAL);
    uint8_t* out = Writable(c.a[1], 32);
    if (out == nullptr) return Errno(EFAULT);
    const TimerState t = ReadTimer(static_cast<int>(which));
    WriteTimer(out, TimerValue{t.interval, t.value});
    return 0;
  }
  int64_t v[4] = {};  // interval sec, usec, value sec, usec
  uint64_t ret = 0;
  if (c.a[1] != 0) {
    const uint8_t* p = sandbox_.HostPtr(c.a[1], 32, UC_PROT_READ);
    if (p == nullptr) ret = Errno(EFAULT);
    if (p != nullptr) std::memcpy(v, p, 32);
  }
  const bool valid =
      v[0] >= 0 && v[2] >= 0 && v[1] >= 0 && v[1] < 1000000 && v[3] >= 0 && v[3] < 1000000;
  if (ret == 0 && (!valid || which < 0 || which > ITIMER_PROF)) ret = Errno(EINVAL);
  if (ret == 0) {
    const TimerState old = ReadTimer(static_cast<int>(which));
    const uint64_t interval = v[0] * 1000000ull + v[1], value = v[2] * 1000000ull + v[3];
    timers_[which] = {interval, value == 0 ? 0 : which == ITIMER_REAL ? clock_us_ + value : value};
    process_state_dirty_ = true;
    if (c.a[2] != 0) {
      uint8_t* out = Writable(c.a[2], 32);
      if (out == nullptr) ret = Errno(EFAULT);
      if (out != nullptr) WriteTimer(out, TimerValue{old.interval, old.value});
    }
  }
  Record(c,
         {c.a[0], static_cast<uint64_t>(v[0]), static_cast<uint64_t>(v[1]),
          static_cast<uint64_t>(v[2]), static_cast<uint64_t>(v[3])},
         ret);
  return ret;
}

bool SyscallLayer::AlarmDue() {
  if (timers_[ITIMER_REAL].value == 0 || clock_us_ < timers_[ITIMER_REAL].value) return false;
  if (actions_[SIGALRM - 1].handler == 1) {  // SIGALRM ignored: the timer goes on
    timers_[ITIMER_REAL].value =
        timers_[ITIMER_REAL].interval == 0 ? 0 : clock_us_ + timers_[ITIMER_REAL].interval;
    return false;
  }
  return true;
}

}  // namespace patchlab::emulator

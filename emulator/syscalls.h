// SyscallLayer: the system calls a checked function may make, answered the
// same way on both sides without a kernel, so that functions making them
// are compared on what they return and write:
//   getpid, gettid        4242 (a process's main thread)
//   clock_gettime         a clock that starts every run at 2026-01-01
//   gettimeofday, time    00:00:00 UTC (monotonic clocks at 100000 s) and
//                         advances 1 us at each reading
//   getrandom             bytes from a splitmix64 stream seeded with the
//                         check's seed, the same for every run (recorded:
//                         a call is compared, with its length and flags)
//   write, writev         to a captured buffer: the call is compared with
//                         the bytes written; returns the count
// and what a single-threaded process that has just started, run by user
// 1000, gets from calls that ask about itself:
//   getuid, geteuid, getgid, getegid  1000;  getppid  1
//   rt_sigprocmask        a signal mask kept per run (empty at the start)
//   futex                 FUTEX_WAKE(_BITSET) wakes no one (0); FUTEX_WAIT
//                         (_BITSET) returns -EAGAIN when the word is not the
//                         expected value, else -ETIMEDOUT with the clock at
//                         its timeout (with none it would sleep forever:
//                         inconclusive); unknown commands -ENOSYS
//   nanosleep, clock_nanosleep  0, the clock moved past the sleep
//   sched_yield 0; sched_get_priority_max/min as Linux answers them;
//   clock_getres          1 ns
//   prlimit64 (reading)   Linux's defaults (stack 8 MiB, 1024 open files, ...)
// and, as such a process holds descriptors 0 (/dev/null), 1 and 2 (pipes,
// captured) and nothing in the sandbox can open another:
//   any call on another descriptor (read, fstat, lseek, ioctl, fcntl, close,
//                         pread64, readv, fsync, fchown, ...)  -EBADF
//   close(0-2) 0, and the descriptor is closed for the rest of the run
//   fstat, newfstatat(fd, "", AT_EMPTY_PATH) on 0-2  /dev/null's or a
//                         pipe's struct stat
//   read, readv, pread64, preadv, lseek of 0  0 (the end of /dev/null);
//                         of 1, 2: -EBADF (read), -ESPIPE (pread, lseek)
//   ioctl on 0-2          -ENOTTY (FIONREAD on a pipe: 0 bytes)
//   fcntl F_GETFD 0, F_GETFL O_RDONLY (0) or O_WRONLY (1, 2)
//   fsync, fdatasync -EINVAL; syncfs 0
//   fchdir, getdents64 on 0-2  -ENOTDIR; pwrite64 -EBADF (0), -ESPIPE;
//   fallocate (mode 0)    -EBADF (0), -ESPIPE (1, 2)
//   accept(4), listen, shutdown, get/setsockopt, getsock/peername,
//   sendmmsg              -ENOTSOCK on 0-2 (-EBADF on others)
//   wait4                 -ECHILD: the process has no children
//   sched_getaffinity     one CPU
//   poll                  /dev/null ready both ways, the pipes for writing,
//                         others POLLNVAL; nothing ready: the clock moves
//                         past the timeout (none: inconclusive)
//   kill, tkill, tgkill to itself: signal 0 and the signals ignored by
//                         default 0; SIGABRT ends the run as abort() does
// write and writev succeed on any descriptor and are compared: what a patch
// writes matters more than where.
// The file system (syscall_files.cc) holds only its root directory, an
// empty tmpfs owned by root (mode 0755), which is also the working
// directory: open, openat, creat, stat, lstat, newfstatat, statx, access,
// faccessat(2), readlink(at), truncate, statfs, chdir, getcwd, mkdir(at),
// symlink(at), link(at), unlink(at), rmdir, rename(at)(2), chmod, fchmodat,
// chown, lchown, fchownat, utimensat and name_to_handle_at give the
// kernel's answer there (-ENOENT for any other name, -EACCES for creating
// one as user 1000, the root's own stat), and each call is compared with
// its path(s), descriptor, flags and mode.
// Anonymous memory (syscall_memory.cc): mmap(NULL, len, PROT_READ |
// PROT_WRITE, MAP_PRIVATE or MAP_SHARED | MAP_ANONYMOUS, -1, 0) is served,
// page-aligned and zeroed, from the sandbox heap; munmap, mprotect,
// pkey_mprotect and madvise answer for those pages and for the sandbox's
// other mappings and holes as the kernel would (-EINVAL, -ENOMEM, 0); the
// calls are compared like allocation calls.
// Signals and scheduling (syscall_process.cc): rt_sigaction keeps every
// signal's disposition per run (all SIG_DFL at the start), sigaltstack
// the alternate stack (disabled at the start); sched_getparam,
// sched_getscheduler (SCHED_OTHER, priority 0), getpriority (nice 0),
// getsid, getpgid, getpgrp (4242: the process leads its session and
// group), setuid/setgid/setreuid/setregid/setresuid/setresgid (to 1000 or
// -1: no change; anything else -EPERM), getresuid/getresgid.
// A bad pointer gets -EFAULT and an unknown flag -EINVAL, as from the
// kernel. Any other system call ends the run as inconclusive, naming it;
// with `deny_others`, it is refused -ENOSYS instead, as under a seccomp
// filter, and the call (number and arguments, stack addresses masked) is
// compared like a library call.
//
// Thread-safety: belongs to its Sandbox's thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

struct uc_struct;

namespace patchlab::emulator {

class Sandbox;

// "openat", or "#999" for a number this machine's kernel headers do not name.
std::string SyscallName(uint64_t nr);

class SyscallLayer {
 public:
  // getpid's and gettid's answer.
  static constexpr uint64_t kProcessId = 4242;

  explicit SyscallLayer(Sandbox& sandbox) : sandbox_(sandbox) {}

  // The seed of getrandom's bytes.
  void set_seed(uint64_t seed) { seed_ = seed; }
  // Refuse the calls not answered above with -ENOSYS (and compare them)
  // rather than end the run inconclusive.
  void set_deny_others(bool deny) { deny_others_ = deny; }
  uint64_t seed() const { return seed_; }
  // Every run starts with the clock and the random stream at their start.
  void BeginRun() {
    clock_us_ = 0;
    random_state_ = seed_;
    signal_mask_ = 0;
    open_fds_ = 0b111;
    killed_by_ = 0;
    if (process_state_dirty_) ResetProcessState();
    anonymous_.clear();
  }
  // Answers the system call the CPU is at (from the sandbox's hook), or
  // decides the run inconclusive and stops it.
  void OnSyscall(uc_struct* uc);

 private:
  struct Call {
    uint64_t nr;
    uint64_t a[6];  // rdi, rsi, rdx, r10, r8, r9
  };
  uint64_t ClockGettime(const Call& c);
  uint64_t Gettimeofday(const Call& c);
  uint64_t Time(const Call& c);
  uint64_t Getrandom(const Call& c);
  uint64_t Write(const Call& c);
  uint64_t Writev(const Call& c);
  uint64_t SigProcMask(const Call& c);
  // nullopt: the call would block forever.
  std::optional<uint64_t> Futex(const Call& c);
  // nanosleep, clock_nanosleep: the clock jumps past the sleep.
  std::optional<uint64_t> Sleep(const Call& c);
  uint64_t GetLimit(const Call& c);
  uint64_t ClockGetres(const Call& c);
  // The answer to a call about the process itself, or nullopt when `nr` is
  // not one of those.
  std::optional<uint64_t> AboutTheProcess(const Call& c);
  uint64_t Deny(const Call& c);
  // syscall_descriptors.cc: the answer to a call on a file descriptor, or
  // to a signal sent to the process itself; nullopt when `c` is neither or
  // its answer is not modelled.
  std::optional<uint64_t> Descriptor(const Call& c);
  std::optional<uint64_t> StatAt(const Call& c);
  std::optional<uint64_t> Poll(const Call& c);
  std::optional<uint64_t> Wait4(const Call& c);
  std::optional<uint64_t> Affinity(const Call& c);
  std::optional<uint64_t> Ioctl(const Call& c);
  std::optional<uint64_t> Fcntl(const Call& c);
  std::optional<uint64_t> SignalToSelf(const Call& c);
  bool IsOpen(uint64_t fd) const;
  // syscall_files.cc: a call that names a path, answered in the empty
  // file system; nullopt when it is not one or its answer is not modelled.
  std::optional<uint64_t> PathCall(const Call& c);
  std::optional<uint64_t> PathCallMore(const Call& c);
  std::optional<uint64_t> PathChange(const Call& c);
  std::optional<uint64_t> PathAttributes(const Call& c);
  class FileSystem;
  // syscall_memory.cc: mmap, munmap, mprotect, pkey_mprotect, madvise.
  std::optional<uint64_t> MemoryCall(const Call& c);
  std::optional<uint64_t> Mprotect(const Call& c);
  std::optional<uint64_t> Madvise(const Call& c);
  // syscall_process.cc: signal dispositions, the alternate stack, the
  // scheduler, ids.
  std::optional<uint64_t> ProcessCall(const Call& c);
  std::optional<uint64_t> SigAction(const Call& c);
  std::optional<uint64_t> SigAltStack(const Call& c);
  std::optional<uint64_t> SetIds(const Call& c);
  // syscall_machine.cc: uname, sysinfo, sethostname, setdomainname and the
  // interval timers.
  std::optional<uint64_t> MachineCall(const Call& c);
  std::optional<uint64_t> Timer(const Call& c);
  struct TimerState {
    uint64_t interval = 0;  // us
    uint64_t value = 0;     // us left; for ITIMER_REAL the clock's deadline (0: disarmed)
  };
  TimerState ReadTimer(int which) const;
  // Whether the real-time timer has fired with SIGALRM not ignored.
  bool AlarmDue();
  void ResetProcessState();
  // Adds a call to the run's compared calls.
  void Record(const Call& c, std::vector<uint64_t> args, uint64_t ret, std::string data = {});
  // Host bytes of guest [addr, addr+len) writable by the kernel (noted as
  // written), or nullptr for -EFAULT.
  uint8_t* Writable(uint64_t addr, uint64_t len);
  // The clock's reading, in microseconds since the run began.
  uint64_t Tick() { return clock_us_++; }

  Sandbox& sandbox_;
  uint64_t seed_ = 1;
  uint64_t clock_us_ = 0;
  uint64_t random_state_ = 1;
  uint64_t signal_mask_ = 0;
  uint32_t open_fds_ = 0b111;  // bit n: descriptor n is open
  int killed_by_ = 0;          // a signal that ended the process
  bool deny_others_ = false;
  // What BeginRun touches on every run sits together, before the tables.
  bool process_state_dirty_ = false;  // a table below changed this run
  // Per run, for syscall_memory.cc: the pages mmap gave out and that are
  // still mapped, [begin, end).
  std::vector<std::pair<uint64_t, uint64_t>> anonymous_;
  // Per run, for syscall_process.cc (cleared by BeginRun when touched).
  struct SigactionState {
    uint64_t handler = 0, flags = 0, restorer = 0, mask = 0;
  };
  SigactionState actions_[64] = {};  // signal n at [n - 1]; 0 is SIG_DFL
  uint64_t altstack_[3] = {};        // ss_sp, ss_flags as set, ss_size (0: disabled)
  TimerState timers_[3] = {};        // ITIMER_REAL, _VIRTUAL, _PROF
};

}  // namespace patchlab::emulator

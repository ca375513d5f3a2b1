// The SyscallLayer's file descriptors and signals to itself (syscalls.h): a
// process that has just started holds descriptors 0 (/dev/null, read-only),
// 1 and 2 (pipes whose bytes the layer captures) and no other, and nothing
// in the sandbox can open one (open, socket, pipe and dup are not answered),
// so a call on any other descriptor gets -EBADF, exactly as the kernel would
// answer this process. Calls on 0-2 are answered where the answer follows
// from what they are (a read of /dev/null is at its end, a pipe cannot
// seek, neither is a terminal); the rest end the run inconclusive.
#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unicorn/unicorn.h>

#include <cerrno>
#include <climits>
#include <csignal>
#include <cstring>

#include "emulator/internal/guest_abi.h"
#include "emulator/internal/sandbox_live.h"
#include "emulator/sandbox.h"
#include "emulator/syscalls.h"

namespace patchlab::emulator {
namespace {

uint64_t Errno(int e) { return static_cast<uint64_t>(-static_cast<int64_t>(e)); }

// The calls whose first argument is a descriptor and that only need it to be
// open to go on: for a closed one the answer is -EBADF.
bool TakesDescriptorFirst(uint64_t nr) {
  switch (nr) {
    case SYS_read:
    case SYS_close:
    case SYS_fstat:
    case SYS_lseek:
    case SYS_ioctl:
    case SYS_pread64:
    case SYS_pwrite64:
    case SYS_readv:
    case SYS_dup:
    case SYS_fcntl:
    case SYS_flock:
    case SYS_fsync:
    case SYS_fdatasync:
    case SYS_ftruncate:
    case SYS_fchmod:
    case SYS_fchown:
    case SYS_fstatfs:
    case SYS_getdents64:
    case SYS_fadvise64:
    case SYS_preadv:
    case SYS_pwritev:
    case SYS_syncfs:
    case SYS_fchdir:
    case SYS_fallocate:
      return true;
    default:
      return false;
  }
}

// The calls on a socket whose first check is that the descriptor is one
// (net/socket.c): -EBADF for a closed one, -ENOTSOCK for 0-2.
bool TakesSocketFirst(uint64_t nr) {
  switch (nr) {
    case SYS_accept:
    case SYS_shutdown:
    case SYS_listen:
    case SYS_getsockname:
    case SYS_getpeername:
    case SYS_setsockopt:
    case SYS_getsockopt:
    case SYS_sendmmsg:
      return true;
    default:
      return false;
  }
}

// struct stat of /dev/null (fd 0) or of a pipe (1, 2).
void FillStat(uint64_t fd, uint8_t* guest) {
  const bool null_device = fd == 0;
  struct stat st {};
  st.st_dev = null_device ? 5 : 12;  // devtmpfs, pipefs
  st.st_ino = null_device ? 4 : 1000 + fd;
  st.st_nlink = 1;
  st.st_mode = null_device ? S_IFCHR | 0666 : S_IFIFO | 0600;
  st.st_uid = st.st_gid = null_device ? 0 : 1000;
  st.st_rdev = null_device ? 0x103 : 0;  // makedev(1, 3)
  st.st_blksize = 4096;
  internal::CopyOut(st, guest);
}

// struct statfs of the file system holding /dev/null (a devtmpfs, given
// 1 GiB here) or a pipe (pipefs, which counts nothing).
void FillStatfs(uint64_t fd, uint8_t* guest) {
  const bool null_device = fd == 0;
  struct statfs sf {};
  sf.f_type = null_device ? TMPFS_MAGIC : PIPEFS_MAGIC;
  sf.f_bsize = sf.f_frsize = 4096;
  sf.f_blocks = sf.f_bfree = sf.f_bavail = null_device ? 262144 : 0;
  sf.f_files = null_device ? 262144 : 0;
  sf.f_ffree = null_device ? 262144 - 200 : 0;
  sf.f_fsid.__val[0] = null_device ? 5 : 12;  // the device, as fstat's st_dev
  sf.f_namelen = NAME_MAX;
  sf.f_flags = (null_device ? ST_RELATIME : 0) | internal::kStValid;
  internal::CopyOut(sf, guest);
}

}  // namespace

bool SyscallLayer::IsOpen(uint64_t fd) const {
  // The kernel reads a descriptor as an unsigned int.
  const uint32_t d = static_cast<uint32_t>(fd);
  return d < 3 && (open_fds_ & (1u << d)) != 0;
}

std::optional<uint64_t> SyscallLayer::Descriptor(const Call& c) {
  if (c.nr == SYS_newfstatat) return StatAt(c);
  if (c.nr == SYS_poll) return Poll(c);
  if (c.nr == SYS_wait4) return Wait4(c);
  if (c.nr == SYS_sched_getaffinity) return Affinity(c);
  // accept4 checks its flags first.
  constexpr uint64_t kAccept4Flags = SOCK_CLOEXEC | SOCK_NONBLOCK;
  if (c.nr == SYS_accept4 && (c.a[3] & ~kAccept4Flags) != 0) return Errno(EINVAL);
  if (TakesSocketFirst(c.nr) || c.nr == SYS_accept4)
    return Errno(IsOpen(c.a[0]) ? ENOTSOCK : EBADF);
  // A negative position is refused before the descriptor is looked at.
  if ((c.nr == SYS_pread64 || c.nr == SYS_pwrite64) && static_cast<int64_t>(c.a[3]) < 0)
    return Errno(EINVAL);
  if (!TakesDescriptorFirst(c.nr)) return std::nullopt;
  if (!IsOpen(c.a[0])) return Errno(EBADF);
  const uint32_t fd = static_cast<uint32_t>(c.a[0]);
  switch (c.nr) {
    case SYS_close:
      open_fds_ &= ~(1u << fd);
      return 0;
    case SYS_fstat: {
      uint8_t* st = Writable(c.a[1], sizeof(struct stat));
      if (st == nullptr) return Errno(EFAULT);
      FillStat(fd, st);
      return 0;
    }
    case SYS_read:
    case SYS_readv:
      return fd == 0 ? 0 : Errno(EBADF);  // /dev/null's end; a pipe's write end
    case SYS_pread64:
    case SYS_preadv:
    case SYS_lseek:
      return fd == 0 ? 0 : Errno(ESPIPE);
    case SYS_fsync:
    case SYS_fdatasync:
      return Errno(EINVAL);  // neither /dev/null nor a pipe can be synced
    case SYS_fchdir:
    case SYS_getdents64:
      return Errno(ENOTDIR);
    case SYS_pwrite64:
      return fd == 0 ? Errno(EBADF) : Errno(ESPIPE);  // /dev/null is open read-only
    case SYS_fallocate:
      // The range, then any mode bits (not modelled), then write access,
      // then the file type.
      if (static_cast<int64_t>(c.a[2]) < 0 || static_cast<int64_t>(c.a[3]) <= 0)
        return Errno(EINVAL);
      if (c.a[1] != 0) return std::nullopt;
      return fd == 0 ? Errno(EBADF) : Errno(ESPIPE);
    case SYS_syncfs:
      return 0;
    case SYS_fadvise64:  // (fd, offset, len, advice)
      if (fd != 0) return Errno(ESPIPE);
      return static_cast<int64_t>(c.a[2]) < 0 || c.a[3] > POSIX_FADV_NOREUSE ? Errno(EINVAL) : 0;
    case SYS_fstatfs: {
      uint8_t* sf = Writable(c.a[1], sizeof(struct statfs));
      if (sf == nullptr) return Errno(EFAULT);
      FillStatfs(fd, sf);
      return 0;
    }
    case SYS_ioctl:
      return Ioctl(c);
    case SYS_fcntl:
      return Fcntl(c);
    default:
      return std::nullopt;
  }
}

std::optional<uint64_t> SyscallLayer::Wait4(const Call& c) {
  // wait4(pid, status, options, rusage): the process has no children.
  constexpr uint64_t kKnownOptions =
      WNOHANG | WUNTRACED | WCONTINUED | __WNOTHREAD | __WALL | __WCLONE;
  if ((static_cast<uint32_t>(c.a[2]) & ~kKnownOptions) != 0) return Errno(EINVAL);
  if (static_cast<int32_t>(c.a[0]) == INT32_MIN) return Errno(ESRCH);
  return Errno(ECHILD);
}

std::optional<uint64_t> SyscallLayer::Affinity(const Call& c) {
  // sched_getaffinity(pid, len, mask) on a machine with one CPU: the mask
  // is one unsigned long with bit 0 set.
  const uint32_t len = static_cast<uint32_t>(c.a[1]);
  if (len == 0 || (len & 7) != 0) return Errno(EINVAL);
  if (static_cast<int32_t>(c.a[0]) != 0 && c.a[0] != kProcessId) return Errno(ESRCH);
  uint8_t* mask = Writable(c.a[2], 8);
  if (mask == nullptr) return Errno(EFAULT);
  const uint64_t one_cpu = 1;
  std::memcpy(mask, &one_cpu, 8);
  return 8;
}

std::optional<uint64_t> SyscallLayer::Poll(const Call& c) {
  // poll(fds, nfds, timeout_ms): /dev/null is always ready both ways
  // (DEFAULT_POLLMASK), an empty pipe's write end for writing, a closed
  // descriptor is POLLNVAL, a negative one ignored. With nothing ready the
  // clock moves past the timeout; with none it would sleep forever.
  constexpr uint16_t kNullMask = POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM;
  constexpr uint16_t kPipeMask = POLLOUT | POLLWRNORM;
  constexpr uint16_t kErrHup = POLLERR | POLLHUP, kNval = POLLNVAL;
  const uint64_t n = c.a[1];
  if (n > 1024) return Errno(EINVAL);  // past RLIMIT_NOFILE
  uint8_t* fds = n == 0 ? nullptr : Writable(c.a[0], n * 8);
  if (n != 0 && fds == nullptr) return Errno(EFAULT);
  uint64_t ready = 0;
  for (uint64_t i = 0; i < n; ++i) {
    int32_t fd = 0;
    uint16_t events = 0, revents = 0;
    std::memcpy(&fd, fds + i * 8, 4);
    std::memcpy(&events, fds + i * 8 + 4, 2);
    if (fd >= 0 && !IsOpen(static_cast<uint32_t>(fd))) revents = kNval;
    if (fd >= 0 && IsOpen(static_cast<uint32_t>(fd)))
      revents = (fd == 0 ? kNullMask : kPipeMask) & (events | kErrHup);
    std::memcpy(fds + i * 8 + 6, &revents, 2);
    if (revents != 0) ++ready;
  }
  const int32_t timeout = static_cast<int32_t>(c.a[2]);
  if (ready == 0 && timeout < 0) return std::nullopt;
  if (ready == 0) clock_us_ += static_cast<uint64_t>(timeout) * 1000;
  return ready;
}

std::optional<uint64_t> SyscallLayer::StatAt(const Call& c) {
  // Only the form that names a descriptor (an empty path with
  // AT_EMPTY_PATH): a path would need a file system.
  const uint8_t* path = sandbox_.HostPtr(c.a[1], 1, UC_PROT_READ);
  if (path == nullptr) return Errno(EFAULT);
  if (*path != 0) return std::nullopt;
  if ((c.a[3] & AT_EMPTY_PATH) == 0) return Errno(ENOENT);
  if (!IsOpen(c.a[0])) return Errno(EBADF);
  uint8_t* st = Writable(c.a[2], sizeof(struct stat));
  if (st == nullptr) return Errno(EFAULT);
  FillStat(static_cast<uint32_t>(c.a[0]), st);
  return 0;
}

std::optional<uint64_t> SyscallLayer::Ioctl(const Call& c) {
  // A pipe answers FIONREAD (nothing to read in an empty one); /dev/null
  // and a pipe answer every other request, the terminal ones among them,
  // with -ENOTTY.
  if (c.a[1] != FIONREAD || c.a[0] == 0) return Errno(ENOTTY);
  uint8_t* n = Writable(c.a[2], 4);
  if (n == nullptr) return Errno(EFAULT);
  std::memset(n, 0, 4);
  return 0;
}

std::optional<uint64_t> SyscallLayer::Fcntl(const Call& c) {
  switch (c.a[1]) {
    case F_GETFD:  // no FD_CLOEXEC on inherited descriptors
      return 0;
    case F_GETFL:
      return static_cast<uint32_t>(c.a[0]) == 0 ? O_RDONLY : O_WRONLY;
    default:  // setting flags, locks, duplicating: not modelled
      return std::nullopt;
  }
}

std::optional<uint64_t> SyscallLayer::SignalToSelf(const Call& c) {
  // kill(pid, sig), tkill(tid, sig), tgkill(pid, tid, sig): this process
  // or its only thread, with the dispositions rt_sigaction set in this run
  // (the default until then).
  const bool tg = c.nr == SYS_tgkill;
  const uint64_t target = tg ? c.a[1] : c.a[0];
  const uint64_t sig = tg ? c.a[2] : c.a[1];
  if (c.nr != SYS_kill && c.nr != SYS_tkill && !tg) return std::nullopt;
  if ((tg && c.a[0] != kProcessId) || target != kProcessId) return std::nullopt;
  if (sig > 64) return Errno(EINVAL);  // the kernel's _NSIG (glibc's NSIG counts signal 0 too)
  if (sig == 0) return 0;              // "does it exist": it does
  if ((signal_mask_ >> (sig - 1)) & 1) return std::nullopt;  // left pending
  if (actions_[sig - 1].handler == 1) return 0;  // SIG_IGN (<csignal> has it as a pointer)
  if (actions_[sig - 1].handler != 0) return std::nullopt;  // a handler would run
  // SIGCHLD, SIGCONT, SIGURG and SIGWINCH are ignored by default.
  if (sig == SIGCHLD || sig == SIGCONT || sig == SIGURG || sig == SIGWINCH) return 0;
  // SIGABRT kills the process as abort() does; what the others do (stop,
  // or terminate without an abort) has no fault class yet.
  if (sig != SIGABRT) return std::nullopt;
  killed_by_ = static_cast<int>(sig);
  return 0;
}

}  // namespace patchlab::emulator

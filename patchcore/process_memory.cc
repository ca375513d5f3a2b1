#include "patchcore/process_memory.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include "base/proc_stat.h"

namespace patchlab::patchcore {

Result<ProcessMemory> ProcessMemory::Open(pid_t pid) {
  std::string path = fmt::format("/proc/{}/mem", pid);
  ScopedFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) {
    int err = errno;
    if (err == ENOENT || err == ESRCH) return Fail(ErrorCode::kTargetGone, "pid {} is gone", pid);
    if (err == EACCES || err == EPERM) {
      return std::unexpected(
          Error(ErrorCode::kRefused, fmt::format("no access to the memory of pid {}", pid), err));
    }
    return FailErrno("open " + path, err);
  }
  return ProcessMemory(pid, std::move(fd));
}

Result<std::vector<uint8_t>> ProcessMemory::Read(RemotePtr addr, size_t size) const {
  std::vector<uint8_t> out(size);
  if (auto st = ReadInto(addr, out); !st) return std::unexpected(std::move(st.error()));
  return out;
}

Status ProcessMemory::ReadInto(RemotePtr addr, std::span<uint8_t> out) const {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(fd_.get(), out.data() + done, out.size() - done,
                        static_cast<off_t>(addr.addr() + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = n < 0 ? errno : EIO;
      if (HasEnded(pid_)) return Fail(ErrorCode::kTargetGone, "pid {} is gone", pid_);
      return std::unexpected(Error::FromErrno(
          fmt::format("read {} bytes at {} in pid {}", out.size(), addr + done, pid_), err));
    }
    done += static_cast<size_t>(n);
  }
  return {};
}

Status ProcessMemory::Write(RemotePtr addr, std::span<const uint8_t> data) const {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(fd_.get(), data.data() + done, data.size() - done,
                         static_cast<off_t>(addr.addr() + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = n < 0 ? errno : EIO;
      if (HasEnded(pid_)) return Fail(ErrorCode::kTargetGone, "pid {} is gone", pid_);
      return std::unexpected(Error::FromErrno(
          fmt::format("write {} bytes at {} in pid {}", data.size(), addr + done, pid_), err));
    }
    done += static_cast<size_t>(n);
  }
  return {};
}

}  // namespace patchlab::patchcore

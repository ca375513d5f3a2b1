// ProcessMemory: reads and writes another process's memory through
// /proc/PID/mem. On this kernel writes reach read-only code pages too (the
// kernel forces them, as for a debugger), so callers must hold every thread
// of the process stopped before writing code another thread could run.
//
// Thread-safety: one object per thread; the fd itself is position-free (pread/pwrite).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <vector>

#include "base/error.h"
#include "base/scoped_fd.h"
#include "patchcore/remote_ptr.h"

namespace patchlab::patchcore {

class ProcessMemory {
 public:
  // Opens /proc/PID/mem for reading and writing. kTargetGone when the pid is
  // gone; kRefused when the kernel denies access (EACCES/EPERM).
  static Result<ProcessMemory> Open(pid_t pid);

  pid_t pid() const { return pid_; }

  // Reads `size` bytes at `addr`. Fails (naming the pid and address) unless all are read.
  Result<std::vector<uint8_t>> Read(RemotePtr addr, size_t size) const;
  Status ReadInto(RemotePtr addr, std::span<uint8_t> out) const;
  // Writes all of `data` at `addr`, or fails naming the pid and address.
  Status Write(RemotePtr addr, std::span<const uint8_t> data) const;

 private:
  ProcessMemory(pid_t pid, ScopedFd fd) : pid_(pid), fd_(std::move(fd)) {}
  pid_t pid_;
  ScopedFd fd_;
};

}  // namespace patchlab::patchcore

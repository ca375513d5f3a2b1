// Unix stream sockets for the VM channels, and a line splitter for JSON lines.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/scoped_fd.h"

namespace patchlab::harness::internal {

// Connects to `path`, retrying while it does not exist or refuses (a QEMU that
// is still starting) until `timeout`. kTimeout naming the path when it never
// accepted; kInvalidArgument for a path too long for sockaddr_un.
Result<ScopedFd> ConnectUnix(const std::filesystem::path& path, std::chrono::milliseconds timeout);

// Writes all of `data`; kIo (EPIPE etc.) naming `what` when the peer is gone.
Status WriteAll(int fd, std::string_view data, std::string_view what);

// Accumulates bytes and hands out complete lines (without '\n').
class LineSplitter {
 public:
  explicit LineSplitter(size_t max_line) : max_line_(max_line) {}
  // Appends bytes; returns the complete lines. A line longer than max_line is
  // returned truncated, with *overlong set.
  std::vector<std::string> Feed(std::string_view bytes, bool* overlong);

 private:
  size_t max_line_;
  std::string buffer_;
  bool discarding_ = false;
};

}  // namespace patchlab::harness::internal

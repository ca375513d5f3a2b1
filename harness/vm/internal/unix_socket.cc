#include "harness/vm/internal/unix_socket.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <thread>

namespace patchlab::harness::internal {

Result<ScopedFd> ConnectUnix(const std::filesystem::path& path, std::chrono::milliseconds timeout) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string p = path.string();
  if (p.size() >= sizeof addr.sun_path) {
    return Fail(ErrorCode::kInvalidArgument, "socket path {} is longer than {} bytes", p,
                sizeof addr.sun_path - 1);
  }
  std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int last_errno = 0;
  while (true) {
    ScopedFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return FailErrno("socket");
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return fd;
    last_errno = errno;
    if (last_errno != ENOENT && last_errno != ECONNREFUSED && last_errno != EAGAIN) {
      return FailErrno("connect " + p, last_errno);
    }
    if (std::chrono::steady_clock::now() >= deadline) break;
    // QEMU creates its sockets within milliseconds of starting; poll finely.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return std::unexpected(Error(ErrorCode::kTimeout,
                               fmt::format("connect {}: nobody listening after {} ms ({})", p,
                                           timeout.count(), std::strerror(last_errno)),
                               last_errno));
}

Status WriteAll(int fd, std::string_view data, std::string_view what) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, 100);
      continue;
    }
    return FailErrno(fmt::format("write to {}", what));
  }
  return {};
}

std::vector<std::string> LineSplitter::Feed(std::string_view bytes, bool* overlong) {
  std::vector<std::string> lines;
  *overlong = false;
  size_t start = 0;
  while (start < bytes.size()) {
    size_t nl = bytes.find('\n', start);
    std::string_view piece =
        bytes.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start);
    if (!discarding_) buffer_.append(piece);
    if (buffer_.size() > max_line_) {
      *overlong = true;
      if (!discarding_) lines.push_back(buffer_.substr(0, 200));
      discarding_ = true;
      buffer_.clear();
    }
    if (nl == std::string_view::npos) break;
    if (!discarding_) lines.push_back(std::move(buffer_));
    buffer_.clear();
    discarding_ = false;
    start = nl + 1;
  }
  return lines;
}

}  // namespace patchlab::harness::internal

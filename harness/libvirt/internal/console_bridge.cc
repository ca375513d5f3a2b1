#include "harness/libvirt/internal/console_bridge.h"

#include <errno.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/socket.h>

#include <cstring>
#include <mutex>

#include "base/log.h"
#include "harness/libvirt/internal/event_loop.h"
#include "harness/libvirt/internal/virt_ptr.h"

namespace patchlab::harness::libvirt_internal {

namespace {

// Bytes one direction may hold before the bridge stops reading its source:
// the agent client reads all the time, so this is reached only by a stalled
// client or a stalled host connection.
constexpr size_t kMaxBuffered = 1 << 20;
constexpr size_t kChunk = 64 * 1024;

}  // namespace

// Everything but `mu`'s fields is touched only on the event loop thread (the
// callbacks, and Open/destruction through RunOnEventLoop), so the pump needs
// no lock for its buffers. `mu` guards what other threads read.
struct ConsoleBridge::Pump {
  std::string where;
  virStreamPtr stream = nullptr;  // owned; freed by ~ConsoleBridge, off the loop
  ScopedFd socket;                // the bridge's end, non-blocking (or the file of OpenToFile)
  bool sink_is_file = false;      // OpenToFile: write(), no watch, nothing to the guest
  int watch = -1;                 // virEventAddHandle id of `socket`
  bool stream_watched = false;    // a stream event callback is registered
  bool stream_ended = false;      // EOF or error: no abort needed
  std::string to_socket;          // from the guest, not yet written to the socket
  std::string to_stream;          // from the socket, not yet sent to the guest

  mutable std::mutex mu;
  bool closed = false;
  std::string reason;
  uint64_t from_guest = 0;
  uint64_t to_guest = 0;

  // Stops both watches and closes the socket (the client sees EOF). Runs on
  // the loop thread. The stream itself is released by the destructor.
  void Close(const std::string& why) {
    if (stream_watched) {
      virStreamEventRemoveCallback(stream);
      stream_watched = false;
    }
    if (watch >= 0) {
      virEventRemoveHandle(watch);
      watch = -1;
    }
    if (socket) {
      ::shutdown(socket.get(), SHUT_RDWR);
      socket.Reset();
    }
    std::lock_guard lock(mu);
    if (!closed) {
      closed = true;
      reason = why;
      Log("libvirt")->debug("{}: agent channel closed: {}", where, why);
    }
  }

  bool Open() const {
    std::lock_guard lock(mu);
    return !closed;
  }

  void FlushToSocket() {
    while (!to_socket.empty() && socket) {
      ssize_t n = sink_is_file ? ::write(socket.get(), to_socket.data(), to_socket.size())
                               : ::send(socket.get(), to_socket.data(), to_socket.size(),
                                        MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n < 0) {
        Close(fmt::format("writing to the {}: {}", sink_is_file ? "console log" : "agent client",
                          std::strerror(errno)));
        return;
      }
      to_socket.erase(0, static_cast<size_t>(n));
    }
  }

  void FlushToStream() {
    while (!to_stream.empty() && Open()) {
      int n = virStreamSend(stream, to_stream.data(), to_stream.size());
      if (n == -2) return;  // the stream is full; WRITABLE comes back
      if (n < 0) {
        stream_ended = true;
        Close("sending on the console stream: " + LastVirError());
        return;
      }
      to_stream.erase(0, static_cast<size_t>(n));
      std::lock_guard lock(mu);
      to_guest += static_cast<uint64_t>(n);
    }
  }

  void ReadStream() {
    char buf[kChunk];
    while (Open() && to_socket.size() < kMaxBuffered) {
      int n = virStreamRecv(stream, buf, sizeof buf);
      if (n == -2) return;  // nothing more for now
      if (n == 0) {
        stream_ended = true;
        Close("the console stream ended (the domain stopped or its host closed it)");
        return;
      }
      if (n < 0) {
        stream_ended = true;
        Close("reading the console stream: " + LastVirError());
        return;
      }
      to_socket.append(buf, static_cast<size_t>(n));
      {
        std::lock_guard lock(mu);
        from_guest += static_cast<uint64_t>(n);
      }
      FlushToSocket();
    }
  }

  void ReadSocket() {
    char buf[kChunk];
    while (socket && to_stream.size() < kMaxBuffered) {
      ssize_t n = ::recv(socket.get(), buf, sizeof buf, MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n <= 0) {
        Close(n == 0 ? "the agent client closed the channel"
                     : fmt::format("reading from the agent client: {}", std::strerror(errno)));
        return;
      }
      to_stream.append(buf, static_cast<size_t>(n));
      FlushToStream();
    }
  }

  // What to wait for next, from what is buffered each way.
  void Rearm() {
    if (!Open()) return;
    if (stream_watched) {
      int events = VIR_STREAM_EVENT_ERROR | VIR_STREAM_EVENT_HANGUP;
      if (to_socket.size() < kMaxBuffered) events |= VIR_STREAM_EVENT_READABLE;
      if (!to_stream.empty()) events |= VIR_STREAM_EVENT_WRITABLE;
      virStreamEventUpdateCallback(stream, events);
    }
    if (watch >= 0) {
      int events = 0;
      if (to_stream.size() < kMaxBuffered) events |= VIR_EVENT_HANDLE_READABLE;
      if (!to_socket.empty()) events |= VIR_EVENT_HANDLE_WRITABLE;
      virEventUpdateHandle(watch, events);
    }
  }
};

namespace {

using PumpRef = std::shared_ptr<ConsoleBridge::Pump>;

// The loop owns one reference per registration, dropped when libvirt frees it,
// so a dispatch that raced with removal never sees a freed pump.
void FreePumpRef(void* opaque) { delete static_cast<PumpRef*>(opaque); }

void OnStreamEvent(virStreamPtr, int events, void* opaque) {
  ConsoleBridge::Pump& p = **static_cast<PumpRef*>(opaque);
  if (!p.Open()) return;
  if (events & VIR_STREAM_EVENT_READABLE) p.ReadStream();
  if ((events & VIR_STREAM_EVENT_WRITABLE) && p.Open()) p.FlushToStream();
  if ((events & (VIR_STREAM_EVENT_ERROR | VIR_STREAM_EVENT_HANGUP)) && p.Open()) {
    // Whatever the stream still held came with READABLE above.
    p.stream_ended = true;
    p.Close((events & VIR_STREAM_EVENT_HANGUP) != 0
                ? "the console stream hung up (the domain stopped?)"
                : "the console stream failed: " + LastVirError());
  }
  p.Rearm();
}

void OnSocketEvent(int, int, int events, void* opaque) {
  ConsoleBridge::Pump& p = **static_cast<PumpRef*>(opaque);
  if (!p.Open()) return;
  if (events & VIR_EVENT_HANDLE_WRITABLE) p.FlushToSocket();
  if ((events & VIR_EVENT_HANDLE_READABLE) && p.Open()) p.ReadSocket();
  if ((events & (VIR_EVENT_HANDLE_HANGUP | VIR_EVENT_HANDLE_ERROR)) && p.Open() &&
      !(events & VIR_EVENT_HANDLE_READABLE)) {
    p.Close("the agent client's socket hung up");
  }
  p.Rearm();
}

}  // namespace

namespace {

// Opens the stream and starts the callbacks, with `pump->socket` already set.
Status StartPump(const PumpRef& pump, TransientDomain& domain, const std::string& device) {
  pump->stream = virStreamNew(domain.host()->conn(), VIR_STREAM_NONBLOCK);
  if (pump->stream == nullptr)
    return FailVirt(ErrorCode::kInfra, pump->where + ": creating a stream");
  if (virDomainOpenConsole(domain.handle(), device.c_str(), pump->stream, 0) < 0) {
    pump->stream_ended = true;  // never opened: nothing to abort
    return FailVirt(ErrorCode::kInfra, pump->where + ": opening as a console stream");
  }
  // Registered on the loop thread so no callback runs before both are set.
  std::string failure;
  RunOnEventLoop([&] {
    auto* stream_ref = new PumpRef(pump);
    if (virStreamEventAddCallback(
            pump->stream,
            VIR_STREAM_EVENT_READABLE | VIR_STREAM_EVENT_ERROR | VIR_STREAM_EVENT_HANGUP,
            OnStreamEvent, stream_ref, FreePumpRef) < 0) {
      delete stream_ref;
      failure = "watching the console stream: " + LastVirError();
      pump->Close(failure);
      return;
    }
    pump->stream_watched = true;
    if (pump->sink_is_file) return;  // a file is always writable: no watch
    auto* socket_ref = new PumpRef(pump);
    pump->watch = virEventAddHandle(pump->socket.get(), VIR_EVENT_HANDLE_READABLE, OnSocketEvent,
                                    socket_ref, FreePumpRef);
    if (pump->watch < 0) {
      delete socket_ref;
      failure = "watching the bridge socket: " + LastVirError();
      pump->Close(failure);
    }
  });
  if (!failure.empty()) return Fail(ErrorCode::kInfra, "{}: {}", pump->where, failure);
  return {};
}

}  // namespace

Result<std::unique_ptr<ConsoleBridge>> ConsoleBridge::Open(TransientDomain& domain,
                                                           const std::string& device,
                                                           ScopedFd* client_end) {
  if (auto s = EnsureEventLoop(); !s) return std::unexpected(s.error());
  auto pump = std::make_shared<Pump>();
  pump->where = fmt::format("{} device {}", domain.Where(), device);
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    return Fail(ErrorCode::kInfra, "{}: socketpair: {}", pump->where, std::strerror(errno));
  }
  ScopedFd client(fds[0]);
  pump->socket.Reset(fds[1]);
  ::fcntl(fds[1], F_SETFL, ::fcntl(fds[1], F_GETFL) | O_NONBLOCK);
  std::unique_ptr<ConsoleBridge> bridge(
      new ConsoleBridge(pump));  // frees the stream on every path below
  if (auto s = StartPump(pump, domain, device); !s) return std::unexpected(s.error());
  *client_end = std::move(client);
  return bridge;
}

Result<std::unique_ptr<ConsoleBridge>> ConsoleBridge::OpenToFile(
    TransientDomain& domain, const std::string& device, const std::filesystem::path& file) {
  if (auto s = EnsureEventLoop(); !s) return std::unexpected(s.error());
  auto pump = std::make_shared<Pump>();
  pump->where = fmt::format("{} device {}", domain.Where(), device);
  pump->sink_is_file = true;
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0)
    return Fail(ErrorCode::kIo, "{}: opening {}: {}", pump->where, file.string(),
                std::strerror(errno));
  pump->socket.Reset(fd);
  std::unique_ptr<ConsoleBridge> bridge(new ConsoleBridge(pump));
  if (auto s = StartPump(pump, domain, device); !s) return std::unexpected(s.error());
  return bridge;
}

ConsoleBridge::~ConsoleBridge() {
  RunOnEventLoop([&] { pump_->Close("closed by the lab"); });
  // No callback can run now; the stream calls below may block on the host
  // (a round trip), so they run here rather than on the loop.
  if (pump_->stream != nullptr) {
    if (!pump_->stream_ended) virStreamAbort(pump_->stream);
    virStreamFree(pump_->stream);
    pump_->stream = nullptr;
  }
}

bool ConsoleBridge::closed() const {
  std::lock_guard lock(pump_->mu);
  return pump_->closed;
}

std::string ConsoleBridge::close_reason() const {
  std::lock_guard lock(pump_->mu);
  return pump_->reason;
}

uint64_t ConsoleBridge::bytes_from_guest() const {
  std::lock_guard lock(pump_->mu);
  return pump_->from_guest;
}

uint64_t ConsoleBridge::bytes_to_guest() const {
  std::lock_guard lock(pump_->mu);
  return pump_->to_guest;
}

}  // namespace patchlab::harness::libvirt_internal

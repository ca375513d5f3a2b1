#include "harness/libvirt/libvirt_host.h"

#include <fmt/format.h>
#include <unistd.h>

#include "base/log.h"
#include "harness/libvirt/internal/event_loop.h"
#include "harness/libvirt/internal/virt_ptr.h"

namespace patchlab::harness {

using libvirt_internal::LastVirError;
using libvirt_internal::TakeString;

bool UriIsLocal(const std::string& uri) {
  size_t scheme_end = uri.find("://");
  if (scheme_end == std::string::npos) return true;  // an alias or a bare driver name
  std::string rest = uri.substr(scheme_end + 3);
  if (rest.empty() || rest[0] == '/') return true;
  std::string host = rest.substr(0, rest.find('/'));
  return host == "localhost" || host == "127.0.0.1";
}

HostCapabilities ParseCapabilities(const std::string& xml) {
  HostCapabilities caps;
  size_t pos = 0;
  while ((pos = xml.find("<guest>", pos)) != std::string::npos) {
    size_t end = xml.find("</guest>", pos);
    if (end == std::string::npos) break;
    std::string guest = xml.substr(pos, end - pos);
    pos = end;
    if (guest.find("<os_type>hvm</os_type>") == std::string::npos) continue;
    if (guest.find("<arch name='x86_64'>") == std::string::npos) continue;
    caps.x86_64_hvm = true;
    if (guest.find("<domain type='kvm'") != std::string::npos) caps.kvm_listed = true;
    size_t e = guest.find("<emulator>");
    if (e != std::string::npos) {
      size_t ee = guest.find("</emulator>", e);
      if (ee != std::string::npos) caps.emulator = guest.substr(e + 10, ee - e - 10);
    }
  }
  return caps;
}

LibvirtHost::LibvirtHost(std::string uri, virConnectPtr conn)
    : uri_(std::move(uri)), local_(UriIsLocal(uri_)), conn_(conn) {}

Result<std::shared_ptr<LibvirtHost>> LibvirtHost::Open(const std::string& uri,
                                                       LibvirtHostOptions options) {
  if (auto s = libvirt_internal::EnsureEventLoop(); !s) return std::unexpected(s.error());
  virConnectPtr conn = virConnectOpen(uri.c_str());
  if (conn == nullptr)
    return Fail(ErrorCode::kInfra, "libvirt {}: cannot connect: {}", uri, LastVirError());
  std::shared_ptr<LibvirtHost> host(new LibvirtHost(uri, conn));
  host->hostname_ = TakeString(virConnectGetHostname(conn));
  if (host->hostname_.empty()) host->hostname_ = uri;
  if (!host->local_) {
    // Only remote drivers support keepalive; a failure here means the server
    // side turned it off, which leaves the close callback as the only watch.
    if (virConnectSetKeepAlive(conn, options.keepalive_interval_s, options.keepalive_count) < 0) {
      Log("libvirt")->warn("libvirt {}: keepalive not available: {}", uri, LastVirError());
    }
  }
  // The test driver has no close callback; its connections never drop.
  if (virConnectRegisterCloseCallback(conn, &LibvirtHost::CloseCallback, host.get(), nullptr) ==
      0) {
    host->close_callback_registered_ = true;
  }
  return host;
}

LibvirtHost::~LibvirtHost() {
  if (close_callback_registered_)
    virConnectUnregisterCloseCallback(conn_, &LibvirtHost::CloseCallback);
  virConnectClose(conn_);
}

std::string LibvirtHost::DisplayName() const {
  return hostname_ == uri_ ? uri_ : fmt::format("{} ({})", uri_, hostname_);
}

void LibvirtHost::CloseCallback(virConnectPtr, int reason, void* opaque) {
  const char* why = reason == VIR_CONNECT_CLOSE_REASON_KEEPALIVE ? "keepalive failed"
                    : reason == VIR_CONNECT_CLOSE_REASON_EOF     ? "connection closed by the daemon"
                    : reason == VIR_CONNECT_CLOSE_REASON_ERROR   ? "connection error"
                                                                 : "closed by the client";
  static_cast<LibvirtHost*>(opaque)->MarkClosed(why);
}

void LibvirtHost::MarkClosed(const std::string& reason) {
  std::vector<std::function<void(const std::string&)>> callbacks;
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    closed_ = true;
    close_reason_ = reason;
    callbacks.swap(on_close_);
  }
  Log("libvirt")->warn("libvirt {}: host dropped out: {}", uri_, reason);
  for (auto& cb : callbacks) cb(reason);
}

bool LibvirtHost::alive() const {
  {
    std::lock_guard lock(mu_);
    if (closed_) return false;
  }
  if (virConnectIsAlive(conn_) != 1) {
    const_cast<LibvirtHost*>(this)->MarkClosed("connection is no longer alive");
    return false;
  }
  return true;
}

std::string LibvirtHost::close_reason() const {
  std::lock_guard lock(mu_);
  return close_reason_;
}

void LibvirtHost::OnClose(std::function<void(const std::string&)> callback) {
  std::string reason;
  {
    std::lock_guard lock(mu_);
    if (!closed_) {
      on_close_.push_back(std::move(callback));
      return;
    }
    reason = close_reason_;
  }
  callback(reason);
}

Result<HostCapabilities> LibvirtHost::Capabilities() const {
  std::string xml = TakeString(virConnectGetCapabilities(conn_));
  if (xml.empty())
    return Fail(ErrorCode::kInfra, "libvirt {}: reading capabilities: {}", uri_, LastVirError());
  HostCapabilities caps = ParseCapabilities(xml);
  if (const char* type = virConnectGetType(conn_)) caps.hypervisor = type;
  unsigned long version = 0;
  if (virConnectGetVersion(conn_, &version) == 0) caps.version = version;
  return caps;
}

}  // namespace patchlab::harness

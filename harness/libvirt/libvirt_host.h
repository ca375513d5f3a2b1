// LibvirtHost: one open connection to a libvirt daemon (a fleet host), with
// the daemon's capabilities and a watch on the connection's health.
//
// Opening a host starts the process's libvirt event loop (needed for domain
// events and keepalive), turns on keepalive for remote connections (a host
// that stops answering is declared dead after interval x count seconds) and
// registers a close callback. Once the connection is closed or the keepalive
// fails, alive() is false and every OnClose callback has run; the host is
// never reopened by this object (a fleet scheduler drops it).
//
// Errors name the URI: "libvirt qemu+ssh://h/system: Cannot recv data: ...".
//
// Thread-safety: thread-safe. conn() may be used from several threads (libvirt
// connections are); OnClose callbacks run on the event loop thread.
#pragma once

#include <libvirt/libvirt.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/error.h"

namespace patchlab::harness {

struct HostCapabilities {
  std::string hypervisor;     // "QEMU", "TEST"
  unsigned long version = 0;  // hypervisor version, e.g. 7002000 for 7.2.0
  bool x86_64_hvm = false;    // the host can run x86_64 hvm guests at all
  bool kvm_listed = false;    // the capabilities list a kvm domain type (not proof it works)
  std::string emulator;       // the x86_64 hvm emulator binary on that host
};

struct LibvirtHostOptions {
  int keepalive_interval_s = 5;  // seconds between pings when idle (remote URIs only)
  unsigned keepalive_count = 3;  // unanswered pings before the host is declared dead
};

class LibvirtHost {
 public:
  // Connects to `uri` (read-write). Fails with kInfra naming the URI when the
  // daemon is unreachable or refuses.
  static Result<std::shared_ptr<LibvirtHost>> Open(const std::string& uri,
                                                   LibvirtHostOptions options = {});
  ~LibvirtHost();
  LibvirtHost(const LibvirtHost&) = delete;
  LibvirtHost& operator=(const LibvirtHost&) = delete;

  const std::string& uri() const { return uri_; }
  // The name recorded with each cell: the URI (unique per daemon, unlike the
  // host name when several daemons share a machine) and the host's name.
  std::string DisplayName() const;
  const std::string& hostname() const { return hostname_; }
  virConnectPtr conn() const { return conn_; }

  // True when the daemon shares this machine's files (no server in the URI):
  // image, console log and agent socket paths can then be used as they are.
  bool local() const { return local_; }

  // False once the connection closed, the keepalive failed, or IsAlive said no.
  bool alive() const;
  std::string close_reason() const;
  // Runs `callback(reason)` once when the connection dies (at once if it already did).
  void OnClose(std::function<void(const std::string&)> callback);

  // Reads and interprets the daemon's capabilities. kInfra naming the URI on failure.
  Result<HostCapabilities> Capabilities() const;

 private:
  LibvirtHost(std::string uri, virConnectPtr conn);
  static void CloseCallback(virConnectPtr conn, int reason, void* opaque);
  void MarkClosed(const std::string& reason);

  std::string uri_;
  std::string hostname_;
  bool local_ = true;
  virConnectPtr conn_;  // owned; closed in the destructor
  bool close_callback_registered_ = false;
  mutable std::mutex mu_;
  bool closed_ = false;
  std::string close_reason_;
  std::vector<std::function<void(const std::string&)>> on_close_;
};

// True when `uri` names no server ("qemu:///system", "qemu+unix:///system?...",
// "test:///default"); false for "qemu+ssh://host/system" and the like.
bool UriIsLocal(const std::string& uri);

// Parses a capabilities document (virConnectGetCapabilities) into the fields above
// (hypervisor and version are left empty).
HostCapabilities ParseCapabilities(const std::string& xml);

}  // namespace patchlab::harness

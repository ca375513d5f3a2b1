// ConsoleBridge: a domain's character device, opened as a libvirt stream
// (virDomainOpenConsole), joined to one end of a socket pair whose other end
// the caller hands to an AgentClient (Open), or appended to a local file
// (OpenToFile: a console log written on this machine whatever the host).
//
// This is how the lab reaches the guest agent on any host: the agent's serial
// port is a pty on the host, and the daemon carries its bytes over the libvirt
// connection itself, so nothing of the host's file system needs to be shared
// (qemu+ssh:// works as qemu:/// does).
//
// Bytes are pumped both ways by callbacks on libvirt's event loop (a
// non-blocking stream and a watch on the socket), the way `virsh console`
// does; every stream call runs on that thread, never two at once. When the
// stream ends (the domain stopped, the daemon or the connection went) the
// bridge closes its socket end, so the AgentClient sees its channel close;
// close_reason() says why. When the AgentClient closes its end, the bridge
// aborts the stream.
//
// What the guest writes while no stream is open is lost, and what is sent
// before the domain runs may be lost too: open the bridge on a paused domain,
// then resume it, then wait for the agent's ready line.
//
// Errors name the host URI and the domain (kInfra).
// Thread-safety: thread-safe; destruction waits for any callback in flight.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "base/error.h"
#include "base/scoped_fd.h"
#include "harness/libvirt/transient_domain.h"

namespace patchlab::harness::libvirt_internal {

class ConsoleBridge {
 public:
  // Opens `device` (a character device alias such as "serial1", of type pty)
  // of `domain` and starts pumping. `*client_end` receives the other end of
  // the socket pair (a blocking stream socket).
  static Result<std::unique_ptr<ConsoleBridge>> Open(TransientDomain& domain,
                                                     const std::string& device,
                                                     ScopedFd* client_end);
  // Opens `device` read-only in effect: what the guest writes there is
  // appended to `file` (created when absent). Nothing is sent to the guest.
  static Result<std::unique_ptr<ConsoleBridge>> OpenToFile(TransientDomain& domain,
                                                           const std::string& device,
                                                           const std::filesystem::path& file);
  // Stops pumping, aborts the stream and closes the bridge's socket end.
  ~ConsoleBridge();
  ConsoleBridge(const ConsoleBridge&) = delete;
  ConsoleBridge& operator=(const ConsoleBridge&) = delete;

  // True once the stream or the socket ended; the reason says which and why.
  bool closed() const;
  std::string close_reason() const;
  // Bytes carried so far: from the guest to the socket, and back.
  uint64_t bytes_from_guest() const;
  uint64_t bytes_to_guest() const;

  struct Pump;  // the state the loop's callbacks share (defined in the .cc)

 private:
  explicit ConsoleBridge(std::shared_ptr<Pump> pump) : pump_(std::move(pump)) {}
  std::shared_ptr<Pump> pump_;
};

}  // namespace patchlab::harness::libvirt_internal

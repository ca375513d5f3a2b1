// TransientDomain: one running libvirt domain the lab created, owned for its
// whole life: destroyed when this object goes, whatever the exit path.
//
// The domain is transient (virDomainCreateXML): it exists only while it runs,
// so destroying it leaves nothing defined on the host. Where the driver
// supports it, it is also started with VIR_DOMAIN_START_AUTODESTROY, so the
// daemon destroys it by itself if this process dies or its connection drops.
// Its lifecycle events (started, suspended, resumed, stopped, shutdown,
// crashed/panicked) are queued from the connection's event loop and read with
// TakeEvents/WaitEvent.
//
// Errors name the host URI and the domain: "libvirt qemu:///system domain
// patchlab-x: ...": kInfra for daemon or VM failures, kNotFound for a domain
// that no longer exists.
//
// Thread-safety: thread-safe (libvirt's calls are; the event queue is locked).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "harness/libvirt/libvirt_host.h"

namespace patchlab::harness {

enum class DomainEventKind {
  kStarted,
  kSuspended,
  kResumed,
  kStopped,
  kShutdown,
  kCrashed,
  kOther
};

struct DomainEvent {
  DomainEventKind kind;
  std::string detail;  // libvirt's event and detail: "stopped/destroyed", "crashed/panicked"
  std::chrono::steady_clock::time_point when;
};

// CPU and memory figures of a running domain, as libvirt reports them.
struct DomainStats {
  std::string state;                     // "running", "paused", "crashed", ...
  uint64_t cpu_time_ns = 0;              // all vCPUs (virDomainGetInfo)
  std::optional<uint64_t> user_time_ns;  // virDomainGetCPUStats, where available
  std::optional<uint64_t> system_time_ns;
  uint64_t memory_kib = 0;          // current allocation
  std::optional<uint64_t> rss_kib;  // resident set of the VM process (virDomainMemoryStats)
};

// How a created or restored domain starts: running, or with its vCPUs paused
// (so that a console can be opened before the guest writes to it; Resume).
enum class StartState { kRunning, kPaused };

class TransientDomain {
 public:
  // Creates and starts a domain from `xml`, whose <name> is `name`.
  static Result<std::unique_ptr<TransientDomain>> Create(std::shared_ptr<LibvirtHost> host,
                                                         const std::string& xml,
                                                         const std::string& name,
                                                         StartState start = StartState::kRunning);
  // Starts the domain saved in `file` (a path on the daemon's host), with
  // `xml` replacing its saved description (same name, uuid and devices; file
  // paths may differ). Empty `xml`: as saved. libvirt cannot autodestroy a
  // restored domain: it outlives this process if the process is killed
  // (domain_owner.h finds and destroys such leftovers).
  static Result<std::unique_ptr<TransientDomain>> Restore(std::shared_ptr<LibvirtHost> host,
                                                          const std::string& file,
                                                          const std::string& xml,
                                                          const std::string& name,
                                                          StartState start = StartState::kRunning);
  // Destroys the domain if it still runs.
  ~TransientDomain();
  TransientDomain(const TransientDomain&) = delete;
  TransientDomain& operator=(const TransientDomain&) = delete;

  const std::string& name() const { return name_; }
  const std::shared_ptr<LibvirtHost>& host() const { return host_; }
  // The libvirt handle, for calls this class does not wrap (consoles). Valid
  // while this object lives.
  virDomainPtr handle() const { return dom_; }

  // True while the domain exists and is not shut off.
  bool Active();
  // Forcibly stops the domain. Succeeds when it is gone, also when it already was.
  Status Destroy();
  Status Suspend();
  Status Resume();
  // Saves the domain's memory and devices to `file` on the daemon's host; the
  // domain stops (and, being transient, is gone). Restore brings it back.
  Status SaveTo(const std::string& file);
  Result<DomainStats> Stats();
  // The live domain XML.
  Result<std::string> XmlDesc();

  // Events not taken before, oldest first.
  std::vector<DomainEvent> TakeEvents();
  // Waits up to `timeout` for an event and takes it.
  std::optional<DomainEvent> WaitEvent(std::chrono::milliseconds timeout);

  // "libvirt URI domain NAME", the prefix of every message.
  std::string Where() const;

  // The event queue the event loop fills (defined in the .cc).
  struct Events;

 private:
  TransientDomain(std::shared_ptr<LibvirtHost> host, virDomainPtr dom, std::string name);
  void SubscribeEvents();
  void UnsubscribeEvents();

  std::shared_ptr<LibvirtHost> host_;
  virDomainPtr dom_;  // owned; freed (not destroyed) in the destructor after Destroy
  std::string name_;
  std::shared_ptr<Events> events_;
  int callback_id_ = -1;
  bool gone_ = false;
};

// A human name for a libvirt domain state (VIR_DOMAIN_RUNNING -> "running").
std::string DomainStateName(int state);

}  // namespace patchlab::harness

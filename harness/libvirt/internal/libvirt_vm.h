// LibvirtVm: the Vm a LibvirtBackend returns: one TransientDomain and the
// AgentClient on its second serial port (carried by a ConsoleBridge over the
// libvirt connection), plus the bookkeeping of the saved state copy it was
// restored from (released when the VM goes).
//
// Thread-safety: as Vm.
#pragma once

#include <chrono>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "harness/libvirt/internal/console_bridge.h"
#include "harness/libvirt/libvirt_backend.h"
#include "harness/libvirt/transient_domain.h"
#include "harness/vm/agent_client.h"
#include "harness/vm/vm_backend.h"
#include "harness/vm/vm_event_queue.h"

namespace patchlab::harness::libvirt_internal {

struct VmPaths {
  std::filesystem::path console_log;
  std::filesystem::path agent_log;
};

// The streams of one domain: the agent channel (the stream bridge and the
// client on its socket; the client goes first, it owns the socket's other
// end) and, where the console log is streamed rather than written by the
// host, the console's bridge into ARTEFACTS/console.log.
struct DomainStreams {
  std::unique_ptr<ConsoleBridge> console;  // null: the host's QEMU writes console.log
  std::unique_ptr<ConsoleBridge> bridge;
  std::unique_ptr<AgentClient> client;
  void Reset() {
    client.reset();
    bridge.reset();
    console.reset();
  }
};

class LibvirtVm : public Vm, public LibvirtVmInfo {
 public:
  // `on_release` runs once the domain is gone (destruction), e.g. to free the
  // saved state copy it was restored from.
  LibvirtVm(std::unique_ptr<TransientDomain> domain, DomainStreams agent, VmImage image,
            VmSpec spec, Accelerator accel, VmPaths paths,
            std::chrono::milliseconds heartbeat_threshold, std::function<void()> on_release);
  ~LibvirtVm() override;

  AgentClient& agent() override { return *agent_.client; }
  const VmSpec& spec() const override { return spec_; }
  const VmImage& image() const override { return image_; }
  Accelerator accelerator() const override { return accel_; }
  std::filesystem::path console_log_path() const override { return paths_.console_log; }
  std::filesystem::path agent_log_path() const override { return paths_.agent_log; }
  std::string Describe() const override;

  std::vector<VmEvent> PollEvents(std::chrono::milliseconds heartbeat_threshold) override;
  std::optional<VmEvent> WaitForEvent(std::chrono::milliseconds timeout,
                                      std::chrono::milliseconds heartbeat_threshold) override;
  bool Running() override;
  Status Shutdown(std::chrono::milliseconds grace) override;
  void Kill() override;
  Status Pause() override;
  Status Cont() override;

  std::string HostName() const override;
  std::string DomainName() const override { return domain_->name(); }
  Result<DomainStats> Stats() override;

  // For SaveReady: the domain is saved (gone) and comes back as `restored`,
  // with a new agent connection. REQUIRES: no other thread uses the VM.
  TransientDomain& domain() { return *domain_; }
  void ReplaceAfterSave(std::unique_ptr<TransientDomain> restored, DomainStreams agent);
  // Called before the domain is saved: the agent channel is about to close.
  void DropAgent();
  // The saved copy this VM now occupies (set by SaveReady), freed on release.
  void SetOnRelease(std::function<void()> on_release);
  const VmPaths& paths() const { return paths_; }

 private:
  // The event queue's collect step. REQUIRES: the queue's lock held (it
  // guards the *_reported_ flags and paused_).
  void CollectLocked(std::chrono::milliseconds heartbeat_threshold, std::deque<VmEvent>& queue);
  // A libvirt domain event as a VmEvent, if it is one. REQUIRES: the queue's lock held.
  void AddDomainEvent(const DomainEvent& e, std::deque<VmEvent>& queue);
  void WriteStats();

  std::unique_ptr<TransientDomain> domain_;
  DomainStreams agent_;
  VmImage image_;
  VmSpec spec_;
  Accelerator accel_;
  VmPaths paths_;
  std::chrono::milliseconds heartbeat_threshold_;
  std::function<void()> on_release_;

  VmEventQueue events_;
  bool exited_reported_ = false;
  bool agent_gone_reported_ = false;
  bool heartbeat_reported_ = false;
  bool paused_ = false;
  bool stats_written_ = false;
};

}  // namespace patchlab::harness::libvirt_internal

#include "harness/libvirt/internal/libvirt_vm.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "base/file_util.h"
#include "base/log.h"

namespace patchlab::harness::libvirt_internal {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

LibvirtVm::LibvirtVm(std::unique_ptr<TransientDomain> domain, DomainStreams agent, VmImage image,
                     VmSpec spec, Accelerator accel, VmPaths paths,
                     milliseconds heartbeat_threshold, std::function<void()> on_release)
    : domain_(std::move(domain)),
      agent_(std::move(agent)),
      image_(std::move(image)),
      spec_(std::move(spec)),
      accel_(accel),
      paths_(std::move(paths)),
      heartbeat_threshold_(heartbeat_threshold),
      on_release_(std::move(on_release)),
      events_([this](milliseconds heartbeat_threshold,
                     std::deque<VmEvent>& queue) { CollectLocked(heartbeat_threshold, queue); },
              // Domain events wake the wait at once; the agent and host checks are polled.
              [this](milliseconds up_to) {
                if (auto e = domain_->WaitEvent(up_to)) {
                  events_.WithLock([&](std::deque<VmEvent>& queue) { AddDomainEvent(*e, queue); });
                }
              },
              milliseconds(100)) {}

LibvirtVm::~LibvirtVm() {
  WriteStats();
  agent_.Reset();
  if (auto s = domain_->Destroy(); !s) Log("libvirt")->warn("{}", s.error().ToString());
  domain_.reset();
  if (on_release_) on_release_();
}

std::string LibvirtVm::Describe() const {
  return fmt::format("libvirt domain {} on {}, {}, {} x{}, {}", domain_->name(),
                     domain_->host()->uri(), image_.name, spec_.cpu_model, spec_.smp,
                     AcceleratorName(accel_));
}

std::string LibvirtVm::HostName() const { return domain_->host()->uri(); }

Result<DomainStats> LibvirtVm::Stats() { return domain_->Stats(); }

void LibvirtVm::WriteStats() {
  if (stats_written_ || !domain_->Active()) return;
  auto stats = domain_->Stats();
  if (!stats) return;
  stats_written_ = true;
  nlohmann::json j;
  j["host"] = domain_->host()->uri();
  j["domain"] = domain_->name();
  j["state"] = stats->state;
  j["cpu_time_ns"] = stats->cpu_time_ns;
  if (stats->user_time_ns) j["user_time_ns"] = *stats->user_time_ns;
  if (stats->system_time_ns) j["system_time_ns"] = *stats->system_time_ns;
  j["memory_kib"] = stats->memory_kib;
  if (stats->rss_kib) j["rss_kib"] = *stats->rss_kib;
  (void)WriteFileAtomic(spec_.artefacts_dir / "libvirt-stats.json", j.dump(2) + "\n");
}

void LibvirtVm::AddDomainEvent(const DomainEvent& e, std::deque<VmEvent>& queue) {
  if (e.kind == DomainEventKind::kCrashed) {
    queue.push_back({VmEventKind::kGuestPanicked, "libvirt " + e.detail, e.when});
  } else if (e.kind == DomainEventKind::kStopped && !exited_reported_) {
    exited_reported_ = true;
    queue.push_back({VmEventKind::kVmExited, "libvirt " + e.detail, e.when});
  }
}

void LibvirtVm::CollectLocked(milliseconds heartbeat_threshold, std::deque<VmEvent>& queue) {
  for (const DomainEvent& e : domain_->TakeEvents()) AddDomainEvent(e, queue);
  if (!exited_reported_ && !domain_->host()->alive()) {
    exited_reported_ = true;
    queue.push_back({VmEventKind::kVmExited,
                     "host connection lost: " + domain_->host()->close_reason(), Clock::now()});
  }
  AgentClient* agent = agent_.client.get();
  if (agent && agent->closed() && !agent_gone_reported_ && !exited_reported_) {
    agent_gone_reported_ = true;
    if (domain_->Active()) {
      // The bridge knows why the stream ended; the client only saw EOF.
      std::string why = agent_.bridge && agent_.bridge->closed() ? agent_.bridge->close_reason()
                                                                 : agent->close_reason();
      queue.push_back({VmEventKind::kAgentGone, "agent channel closed: " + why, Clock::now()});
    } else {
      // The channel closed because the VM ended: say how, from libvirt's
      // stopped event, which may trail the socket's end by a moment.
      std::optional<DomainEvent> stopped;
      for (int i = 0; i < 10 && !stopped; ++i) {
        auto e = domain_->WaitEvent(std::chrono::milliseconds(100));
        if (!e) continue;
        if (e->kind == DomainEventKind::kCrashed) {
          queue.push_back({VmEventKind::kGuestPanicked, "libvirt " + e->detail, e->when});
        } else if (e->kind == DomainEventKind::kStopped) {
          stopped = e;
        }
      }
      exited_reported_ = true;
      queue.push_back({VmEventKind::kVmExited,
                       stopped ? "libvirt " + stopped->detail : "domain no longer running",
                       stopped ? stopped->when : Clock::now()});
    }
  }
  // A paused VM is silent on purpose (Pause simulates a hung host).
  if (agent && !paused_ && !heartbeat_reported_ && !exited_reported_ &&
      agent->HeartbeatLost(heartbeat_threshold)) {
    heartbeat_reported_ = true;
    queue.push_back({VmEventKind::kHeartbeatLost,
                     fmt::format("no heartbeat for {:.1f} s",
                                 static_cast<double>(agent->SinceLastHeard().count()) / 1000.0),
                     Clock::now()});
  }
}

std::vector<VmEvent> LibvirtVm::PollEvents(milliseconds heartbeat_threshold) {
  return events_.Poll(heartbeat_threshold);
}

std::optional<VmEvent> LibvirtVm::WaitForEvent(milliseconds timeout,
                                               milliseconds heartbeat_threshold) {
  return events_.Wait(timeout, heartbeat_threshold);
}

bool LibvirtVm::Running() { return domain_->host()->alive() && domain_->Active(); }

Status LibvirtVm::Shutdown(milliseconds grace) {
  WriteStats();
  if (!domain_->Active()) return {};
  // busybox init ignores ACPI power buttons: the agent powers the guest off.
  bool asked = agent_.client && !agent_.client->closed() && agent_.client->Shutdown().has_value();
  if (asked) {
    Clock::time_point deadline = Clock::now() + grace;
    while (Clock::now() < deadline && domain_->Active())
      std::this_thread::sleep_for(milliseconds(50));
  }
  return domain_->Destroy();
}

void LibvirtVm::Kill() {
  WriteStats();
  if (auto s = domain_->Destroy(); !s) Log("libvirt")->warn("{}", s.error().ToString());
}

Status LibvirtVm::Pause() {
  if (auto s = domain_->Suspend(); !s) return s;
  events_.WithLock([&](std::deque<VmEvent>&) { paused_ = true; });
  return {};
}

Status LibvirtVm::Cont() {
  if (auto s = domain_->Resume(); !s) return s;
  events_.WithLock([&](std::deque<VmEvent>&) { paused_ = false; });
  return {};
}

void LibvirtVm::DropAgent() { agent_.Reset(); }

void LibvirtVm::ReplaceAfterSave(std::unique_ptr<TransientDomain> restored, DomainStreams agent) {
  agent_.Reset();
  domain_ = std::move(restored);
  agent_ = std::move(agent);
  events_.WithLock([&](std::deque<VmEvent>& queue) {
    queue.clear();
    exited_reported_ = agent_gone_reported_ = heartbeat_reported_ = false;
  });
}

void LibvirtVm::SetOnRelease(std::function<void()> on_release) {
  on_release_ = std::move(on_release);
}

}  // namespace patchlab::harness::libvirt_internal

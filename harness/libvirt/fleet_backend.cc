#include "harness/libvirt/fleet_backend.h"

#include <condition_variable>
#include <mutex>

#include <fmt/format.h>

#include "base/log.h"

namespace patchlab::harness {

namespace fs = std::filesystem;

struct FleetHost {
  std::string uri;
  std::unique_ptr<LibvirtBackend> backend;  // null when it could not be opened
  bool alive = false;
  std::string reason;
  int running = 0;
  int started = 0;
};

struct FleetBackend::Impl {
  FleetOptions options;
  mutable std::mutex mu;
  std::condition_variable cv;
  std::vector<FleetHost> hosts;

  // Waits for a free slot on a live host (preferring `preferred` hosts when
  // they have one) and takes it. kInfra when no host is left.
  Result<size_t> Acquire() {
    std::unique_lock lock(mu);
    while (true) {
      std::optional<size_t> best;
      bool any_alive = false;
      for (size_t i = 0; i < hosts.size(); ++i) {
        FleetHost& h = hosts[i];
        if (h.alive && !h.backend->host()->alive()) {
          h.alive = false;
          h.reason = h.backend->host()->close_reason();
        }
        if (!h.alive) continue;
        any_alive = true;
        if (h.running >= options.per_host) continue;
        if (!best || h.running < hosts[*best].running) best = i;
      }
      if (best) {
        ++hosts[*best].running;
        ++hosts[*best].started;
        return *best;
      }
      if (!any_alive) {
        std::string why;
        for (const auto& h : hosts) why += fmt::format("; {}: {}", h.uri, h.reason);
        return Fail(ErrorCode::kInfra, "libvirt fleet: every host dropped out{}", why);
      }
      // Host deaths notify too; the timeout re-checks liveness in case a
      // close callback never comes (a daemon that hangs without closing).
      cv.wait_for(lock, std::chrono::seconds(1));
    }
  }

  void Release(size_t index) {
    {
      std::lock_guard lock(mu);
      --hosts[index].running;
    }
    cv.notify_all();
  }

  void MarkDead(size_t index, const std::string& reason) {
    {
      std::lock_guard lock(mu);
      if (!hosts[index].alive) return;
      hosts[index].alive = false;
      hosts[index].reason = reason;
    }
    cv.notify_all();
  }

  // The per-host name of a fleet-wide state file: one copy per host.
  static ReadyState OnHost(const ReadyState& state, size_t index) {
    ReadyState s = state;
    s.file = fmt::format("{}.host{}", state.file.string(), index);
    return s;
  }
};

namespace {

// A Vm running on one fleet host, holding that host's slot until destroyed.
class FleetVm : public Vm, public LibvirtVmInfo {
 public:
  FleetVm(std::unique_ptr<Vm> inner, std::shared_ptr<FleetBackend::Impl> fleet, size_t host)
      : inner_(std::move(inner)), fleet_(std::move(fleet)), host_(host) {}
  ~FleetVm() override {
    inner_.reset();
    fleet_->Release(host_);
  }

  Vm& inner() { return *inner_; }
  size_t host_index() const { return host_; }

  AgentClient& agent() override { return inner_->agent(); }
  const VmSpec& spec() const override { return inner_->spec(); }
  const VmImage& image() const override { return inner_->image(); }
  Accelerator accelerator() const override { return inner_->accelerator(); }
  std::filesystem::path console_log_path() const override { return inner_->console_log_path(); }
  std::filesystem::path agent_log_path() const override { return inner_->agent_log_path(); }
  std::string Describe() const override { return inner_->Describe(); }
  std::vector<VmEvent> PollEvents(std::chrono::milliseconds t) override { return inner_->PollEvents(t); }
  std::optional<VmEvent> WaitForEvent(std::chrono::milliseconds timeout, std::chrono::milliseconds t) override {
    return inner_->WaitForEvent(timeout, t);
  }
  bool Running() override { return inner_->Running(); }
  Status Shutdown(std::chrono::milliseconds grace) override { return inner_->Shutdown(grace); }
  void Kill() override { inner_->Kill(); }
  Status Pause() override { return inner_->Pause(); }
  Status Cont() override { return inner_->Cont(); }

  std::string HostName() const override { return Info().HostName(); }
  std::string DomainName() const override { return Info().DomainName(); }
  Result<DomainStats> Stats() override { return Info().Stats(); }

 private:
  LibvirtVmInfo& Info() const { return *AsLibvirtVm(*inner_); }

  std::unique_ptr<Vm> inner_;
  std::shared_ptr<FleetBackend::Impl> fleet_;
  size_t host_;
};

}  // namespace

FleetBackend::FleetBackend(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
FleetBackend::~FleetBackend() = default;

Result<std::unique_ptr<FleetBackend>> FleetBackend::Open(FleetOptions options) {
  if (options.uris.empty()) return Fail(ErrorCode::kInvalidArgument, "libvirt fleet: no --connect URI given");
  if (options.per_host < 1) {
    return Fail(ErrorCode::kInvalidArgument, "libvirt fleet: --per-host must be at least 1 (got {})",
                options.per_host);
  }
  auto impl = std::make_shared<Impl>();
  impl->options = options;
  std::string failures;
  for (size_t i = 0; i < options.uris.size(); ++i) {
    FleetHost h;
    h.uri = options.uris[i];
    LibvirtBackendOptions bo = options.backend;
    bo.uri = h.uri;
    auto backend = LibvirtBackend::Open(bo);
    if (!backend) {
      h.reason = backend.error().ToString();
      failures += "\n  " + h.reason;
      Log("libvirt")->warn("libvirt fleet: leaving out {}: {}", h.uri, h.reason);
    } else {
      h.backend = std::move(*backend);
      h.alive = true;
    }
    impl->hosts.push_back(std::move(h));
  }
  bool any = false;
  for (size_t i = 0; i < impl->hosts.size(); ++i) {
    if (!impl->hosts[i].alive) continue;
    any = true;
    std::weak_ptr<Impl> weak = impl;
    impl->hosts[i].backend->host()->OnClose([weak, i](const std::string& reason) {
      if (auto fleet = weak.lock()) fleet->MarkDead(i, reason);
    });
  }
  if (!any) return Fail(ErrorCode::kInfra, "libvirt fleet: no host reachable:{}", failures);
  return std::unique_ptr<FleetBackend>(new FleetBackend(std::move(impl)));
}

Result<std::unique_ptr<Vm>> FleetBackend::Boot(const VmImage& image, const VmSpec& spec) {
  // A host that drops out while booting costs that attempt only.
  std::string failures;
  for (size_t attempt = 0; attempt < impl_->hosts.size(); ++attempt) {
    auto slot = impl_->Acquire();
    if (!slot) return std::unexpected(Error(ErrorCode::kInfra, slot.error().message() + failures));
    FleetHost& h = impl_->hosts[*slot];
    auto vm = h.backend->Boot(image, spec);
    if (vm) return std::unique_ptr<Vm>(std::make_unique<FleetVm>(std::move(*vm), impl_, *slot));
    impl_->Release(*slot);
    if (h.backend->host()->alive()) return vm;  // the host is fine: the failure is the VM's
    impl_->MarkDead(*slot, h.backend->host()->close_reason());
    failures += "; " + vm.error().ToString();
  }
  return Fail(ErrorCode::kInfra, "libvirt fleet: no host could boot {}{}", spec.name, failures);
}

Result<ReadyState> FleetBackend::SaveReady(Vm& vm, const fs::path& file) {
  auto* fleet_vm = dynamic_cast<FleetVm*>(&vm);
  if (fleet_vm == nullptr) return Fail(ErrorCode::kInvalidArgument, "SaveReady: {} is not a fleet VM", vm.Describe());
  size_t index = fleet_vm->host_index();
  ReadyState fleet_state;
  fleet_state.backend = "libvirt";
  fleet_state.file = file;
  auto saved = impl_->hosts[index].backend->SaveReady(fleet_vm->inner(), Impl::OnHost(fleet_state, index).file);
  if (!saved) return saved;
  fleet_state.image = saved->image;
  fleet_state.spec = saved->spec;
  return fleet_state;
}

Result<std::unique_ptr<Vm>> FleetBackend::RestoreReady(const ReadyState& state, const VmSpec& spec) {
  std::string failures;
  for (size_t attempt = 0; attempt < impl_->hosts.size(); ++attempt) {
    auto slot = impl_->Acquire();
    if (!slot) return std::unexpected(Error(ErrorCode::kInfra, slot.error().message() + failures));
    FleetHost& h = impl_->hosts[*slot];
    // A host without its copy of the state boots and saves one (LibvirtBackend).
    auto vm = h.backend->RestoreReady(Impl::OnHost(state, *slot), spec);
    if (vm) return std::unique_ptr<Vm>(std::make_unique<FleetVm>(std::move(*vm), impl_, *slot));
    impl_->Release(*slot);
    if (h.backend->host()->alive()) return vm;
    impl_->MarkDead(*slot, h.backend->host()->close_reason());
    failures += "; " + vm.error().ToString();
  }
  return Fail(ErrorCode::kInfra, "libvirt fleet: no host could restore {}{}", spec.name, failures);
}

std::vector<FleetHostStatus> FleetBackend::Hosts() const {
  std::lock_guard lock(impl_->mu);
  std::vector<FleetHostStatus> out;
  for (const auto& h : impl_->hosts) {
    bool alive = h.alive && h.backend && h.backend->host()->alive();
    out.push_back({h.uri, alive, alive ? "" : (h.reason.empty() && h.backend ? h.backend->host()->close_reason() : h.reason),
                   h.running, h.started});
  }
  return out;
}

int FleetBackend::capacity() const {
  int live = 0;
  for (const auto& h : Hosts()) live += h.alive ? 1 : 0;
  return live * impl_->options.per_host;
}

Result<std::unique_ptr<VmBackend>> MakeLibvirtBackend(const std::vector<std::string>& uris, int per_host,
                                                      LibvirtBackendOptions options) {
  FleetOptions o;
  o.uris = uris;
  o.per_host = per_host;
  o.backend = std::move(options);
  auto fleet = FleetBackend::Open(std::move(o));
  if (!fleet) return std::unexpected(fleet.error());
  return std::unique_ptr<VmBackend>(std::move(*fleet));
}

std::string VmHostName(Vm& vm) {
  LibvirtVmInfo* info = AsLibvirtVm(vm);
  return info != nullptr ? info->HostName() : std::string();
}

}  // namespace patchlab::harness

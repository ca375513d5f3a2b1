#include "harness/libvirt/fleet_backend.h"

#include <fmt/format.h>

#include <condition_variable>
#include <mutex>

#include "base/log.h"

namespace patchlab::harness {

namespace fs = std::filesystem;

using Clock = std::chrono::steady_clock;

struct FleetHost {
  std::string uri;
  // Null when it could not be opened. Replaced on a reconnect, so users copy
  // the pointer under the fleet's lock (a VM keeps its own host alive).
  std::shared_ptr<LibvirtBackend> backend;
  bool alive = false;
  std::string reason;
  int running = 0;
  int started = 0;
  int reconnects = 0;
  Clock::time_point next_attempt{};  // when a dead host may be tried again
  bool reconnecting = false;         // one thread tries at a time
};

// A slot taken on one host, with the backend it was taken on.
struct FleetSlot {
  size_t index;
  std::shared_ptr<LibvirtBackend> backend;
};

struct FleetBackend::Impl {
  FleetOptions options;
  mutable std::mutex mu;
  std::condition_variable cv;
  std::vector<FleetHost> hosts;

  // Waits for a free slot on a live host and takes it; tries dead hosts again
  // when their reconnect time has come. kInfra when no host is left.
  Result<FleetSlot> Acquire() {
    std::unique_lock lock(mu);
    while (true) {
      std::optional<size_t> best;
      bool any_alive = false;
      bool any_retry = false;
      for (size_t i = 0; i < hosts.size(); ++i) {
        FleetHost& h = hosts[i];
        if (h.alive && !h.backend->host()->alive()) {
          h.alive = false;
          h.reason = h.backend->host()->close_reason();
          h.next_attempt = Clock::now() + options.reconnect_interval;
        }
        if (!h.alive) {
          if (options.reconnect_interval.count() > 0) any_retry = true;
          continue;
        }
        any_alive = true;
        if (h.running >= options.per_host) continue;
        if (!best || h.running < hosts[*best].running) best = i;
      }
      if (best) {
        ++hosts[*best].running;
        ++hosts[*best].started;
        return FleetSlot{*best, hosts[*best].backend};
      }
      if (TryReconnect(lock)) continue;
      if (!any_alive && !any_retry) {
        std::string why;
        for (const auto& h : hosts) why += fmt::format("; {}: {}", h.uri, h.reason);
        return Fail(ErrorCode::kInfra, "libvirt fleet: every host dropped out{}", why);
      }
      // Host deaths notify too; the timeout re-checks liveness in case a
      // close callback never comes (a daemon that hangs without closing),
      // and brings the next reconnect attempt.
      cv.wait_for(lock, std::chrono::seconds(1));
    }
  }

  // Tries to reopen one dead host whose time has come, with `lock` released
  // while connecting. True when a host came back.
  bool TryReconnect(std::unique_lock<std::mutex>& lock) {
    if (options.reconnect_interval.count() <= 0) return false;
    Clock::time_point now = Clock::now();
    for (size_t i = 0; i < hosts.size(); ++i) {
      FleetHost& h = hosts[i];
      if (h.alive || h.reconnecting || now < h.next_attempt) continue;
      h.reconnecting = true;
      LibvirtBackendOptions bo = options.backend;
      bo.uri = h.uri;
      lock.unlock();
      auto backend = LibvirtBackend::Open(bo);
      lock.lock();
      h.reconnecting = false;
      h.next_attempt = Clock::now() + options.reconnect_interval;
      if (!backend) {
        h.reason = backend.error().ToString();
        continue;
      }
      std::shared_ptr<LibvirtBackend> old = std::move(h.backend);
      h.backend = std::move(*backend);
      h.alive = true;
      h.reason.clear();
      ++h.reconnects;
      Log("libvirt")->warn("libvirt fleet: {} is back; it takes VMs again", h.uri);
      std::shared_ptr<LibvirtBackend> current = h.backend;
      lock.unlock();
      // Unlocked: a connection already closed calls MarkDead at once.
      Watch(i, current);
      old.reset();  // closes the dead connection (VMs on it hold their own reference)
      lock.lock();
      return true;
    }
    return false;
  }

  // Marks host `index` dead when `backend`'s connection closes.
  // REQUIRES: `mu` not held (the callback runs at once if it closed already).
  void Watch(size_t index, const std::shared_ptr<LibvirtBackend>& backend) {
    std::weak_ptr<Impl> weak = self;
    const LibvirtHost* watched = backend->host().get();
    backend->host()->OnClose([weak, index, watched](const std::string& reason) {
      if (auto fleet = weak.lock()) fleet->MarkDead(index, watched, reason);
    });
  }

  void Release(size_t index) {
    {
      std::lock_guard lock(mu);
      --hosts[index].running;
    }
    cv.notify_all();
  }

  // Marks host `index` dead if `connection` (null: any) is still its current one.
  void MarkDead(size_t index, const LibvirtHost* connection, const std::string& reason) {
    {
      std::lock_guard lock(mu);
      FleetHost& h = hosts[index];
      if (!h.alive) return;
      if (connection != nullptr && h.backend->host().get() != connection)
        return;  // an older connection's close
      h.alive = false;
      h.reason = reason;
      h.next_attempt = Clock::now() + options.reconnect_interval;
    }
    cv.notify_all();
  }

  std::weak_ptr<Impl> self;

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
  FleetVm(std::unique_ptr<Vm> inner, std::shared_ptr<FleetBackend::Impl> fleet, FleetSlot slot)
      : inner_(std::move(inner)), fleet_(std::move(fleet)), slot_(std::move(slot)) {}
  ~FleetVm() override {
    inner_.reset();
    fleet_->Release(slot_.index);
  }

  Vm& inner() { return *inner_; }
  size_t host_index() const { return slot_.index; }
  LibvirtBackend& backend() { return *slot_.backend; }

  AgentClient& agent() override { return inner_->agent(); }
  const VmSpec& spec() const override { return inner_->spec(); }
  const VmImage& image() const override { return inner_->image(); }
  Accelerator accelerator() const override { return inner_->accelerator(); }
  std::filesystem::path console_log_path() const override { return inner_->console_log_path(); }
  std::filesystem::path agent_log_path() const override { return inner_->agent_log_path(); }
  std::string Describe() const override { return inner_->Describe(); }
  std::vector<VmEvent> PollEvents(std::chrono::milliseconds t) override {
    return inner_->PollEvents(t);
  }
  std::optional<VmEvent> WaitForEvent(std::chrono::milliseconds timeout,
                                      std::chrono::milliseconds t) override {
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
  FleetSlot slot_;  // the backend it runs on stays while it does, even past a reconnect
};

}  // namespace

FleetBackend::FleetBackend(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
FleetBackend::~FleetBackend() = default;

Result<std::unique_ptr<FleetBackend>> FleetBackend::Open(FleetOptions options) {
  if (options.uris.empty())
    return Fail(ErrorCode::kInvalidArgument, "libvirt fleet: no --connect URI given");
  if (options.per_host < 1) {
    return Fail(ErrorCode::kInvalidArgument,
                "libvirt fleet: --per-host must be at least 1 (got {})", options.per_host);
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
      h.next_attempt = Clock::now() + options.reconnect_interval;
    } else {
      h.backend = std::move(*backend);
      h.alive = true;
    }
    impl->hosts.push_back(std::move(h));
  }
  impl->self = impl;
  bool any = false;
  for (size_t i = 0; i < impl->hosts.size(); ++i) {
    if (!impl->hosts[i].alive) continue;
    any = true;
    impl->Watch(i, impl->hosts[i].backend);
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
    auto vm = slot->backend->Boot(image, spec);
    if (vm) return std::unique_ptr<Vm>(std::make_unique<FleetVm>(std::move(*vm), impl_, *slot));
    impl_->Release(slot->index);
    const auto& host = slot->backend->host();
    if (host->alive()) return vm;  // the host is fine: the failure is the VM's
    impl_->MarkDead(slot->index, host.get(), host->close_reason());
    failures += "; " + vm.error().ToString();
  }
  return Fail(ErrorCode::kInfra, "libvirt fleet: no host could boot {}{}", spec.name, failures);
}

Result<ReadyState> FleetBackend::SaveReady(Vm& vm, const fs::path& file) {
  auto* fleet_vm = dynamic_cast<FleetVm*>(&vm);
  if (fleet_vm == nullptr)
    return Fail(ErrorCode::kInvalidArgument, "SaveReady: {} is not a fleet VM", vm.Describe());
  size_t index = fleet_vm->host_index();
  ReadyState fleet_state;
  fleet_state.backend = "libvirt";
  fleet_state.file = file;
  auto saved =
      fleet_vm->backend().SaveReady(fleet_vm->inner(), Impl::OnHost(fleet_state, index).file);
  if (!saved) return saved;
  fleet_state.image = saved->image;
  fleet_state.spec = saved->spec;
  return fleet_state;
}

Result<std::unique_ptr<Vm>> FleetBackend::RestoreReady(const ReadyState& state,
                                                       const VmSpec& spec) {
  std::string failures;
  for (size_t attempt = 0; attempt < impl_->hosts.size(); ++attempt) {
    auto slot = impl_->Acquire();
    if (!slot) return std::unexpected(Error(ErrorCode::kInfra, slot.error().message() + failures));
    // A host without its copy of the state boots and saves one (LibvirtBackend).
    auto vm = slot->backend->RestoreReady(Impl::OnHost(state, slot->index), spec);
    if (vm) return std::unique_ptr<Vm>(std::make_unique<FleetVm>(std::move(*vm), impl_, *slot));
    impl_->Release(slot->index);
    const auto& host = slot->backend->host();
    if (host->alive()) return vm;
    impl_->MarkDead(slot->index, host.get(), host->close_reason());
    failures += "; " + vm.error().ToString();
  }
  return Fail(ErrorCode::kInfra, "libvirt fleet: no host could restore {}{}", spec.name, failures);
}

std::vector<FleetHostStatus> FleetBackend::Hosts() const {
  std::lock_guard lock(impl_->mu);
  std::vector<FleetHostStatus> out;
  for (const auto& h : impl_->hosts) {
    bool alive = h.alive && h.backend && h.backend->host()->alive();
    out.push_back(
        {h.uri, alive,
         alive ? ""
               : (h.reason.empty() && h.backend ? h.backend->host()->close_reason() : h.reason),
         h.running, h.started, h.reconnects});
  }
  return out;
}

int FleetBackend::capacity() const {
  int live = 0;
  for (const auto& h : Hosts()) live += h.alive ? 1 : 0;
  return live * impl_->options.per_host;
}

Result<std::unique_ptr<VmBackend>> MakeLibvirtBackend(const std::vector<std::string>& uris,
                                                      int per_host, LibvirtBackendOptions options) {
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

// FleetBackend: a VmBackend that spreads VMs over several libvirt hosts, at
// most `per_host` running at once on each.
//
// Boot and RestoreReady take a free slot on the live host with the fewest VMs
// running (waiting while every slot is taken), and run the VM there through
// that host's LibvirtBackend; the slot is freed when the Vm is destroyed. A
// host whose connection closes or whose keepalive fails drops out: it gets no
// new VMs, its running VMs report kVmExited ("host connection lost"), and the
// runner's retry of those cells lands on the hosts left. A host that cannot
// be reached at Open is left out with a warning; Open fails only when no host
// is reachable. A dropped or left-out host is tried again, at most once per
// reconnect_interval, when a VM finds no free slot on the live hosts; once it
// answers it takes VMs again (and its leftovers of dead labs are destroyed,
// as on every connect).
//
// Ready states are per host (a saved state is a file on that host): SaveReady
// saves on the VM's host and RestoreReady restores on whichever host it runs,
// making that host's copy first when it has none.
//
// Every Vm also answers AsLibvirtVm(vm)->HostName(): the host URI, recorded
// with each cell.
//
// Thread-safety: as VmBackend; Hosts() may be called from any thread.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "harness/libvirt/libvirt_backend.h"
#include "harness/vm/vm_backend.h"

namespace patchlab::harness {

struct FleetOptions {
  std::vector<std::string> uris;  // one per host; at least one
  int per_host = 1;               // VMs running at once on each host
  LibvirtBackendOptions backend;  // for every host (its uri is replaced)
  // How often a host that dropped out (or was unreachable at Open) is tried
  // again; zero: never.
  std::chrono::milliseconds reconnect_interval{30000};
};

struct FleetHostStatus {
  std::string uri;
  bool alive = false;
  std::string reason;  // why it dropped out or was left out
  int running = 0;     // VMs running there now
  int started = 0;     // VMs started there so far
  int reconnects = 0;  // times it came back after dropping out
};

class FleetBackend : public VmBackend {
 public:
  // Connects to every URI. Fails (kInfra, naming each URI and why) only when
  // none is reachable; kInvalidArgument for no URI or per_host < 1.
  static Result<std::unique_ptr<FleetBackend>> Open(FleetOptions options);
  ~FleetBackend() override;

  std::string_view Name() const override { return "libvirt"; }
  Result<std::unique_ptr<Vm>> Boot(const VmImage& image, const VmSpec& spec) override;
  Result<ReadyState> SaveReady(Vm& vm, const std::filesystem::path& file) override;
  Result<std::unique_ptr<Vm>> RestoreReady(const ReadyState& state, const VmSpec& spec) override;

  // Every host given at Open, in order, with its state now.
  std::vector<FleetHostStatus> Hosts() const;
  int capacity() const;  // live hosts x per_host

  struct Impl;

 private:
  explicit FleetBackend(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

// What `patchlab run --backend libvirt --connect URI... --per-host N` runs on:
// a FleetBackend over `uris` (one URI is a fleet of one host). Errors as Open.
Result<std::unique_ptr<VmBackend>> MakeLibvirtBackend(const std::vector<std::string>& uris,
                                                      int per_host,
                                                      LibvirtBackendOptions options = {});

// The host a Vm runs on, for CellResult::host: its libvirt URI, or "" for a
// VM of another backend.
std::string VmHostName(Vm& vm);

}  // namespace patchlab::harness

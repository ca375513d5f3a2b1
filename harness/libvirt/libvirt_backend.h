// LibvirtBackend: VmBackend that runs the lab's VMs as transient libvirt
// domains on one host, through libvirt's C API.
//
// Each VM is a domain named "patchlab-NAME-PID-N" (unique on the host while it
// runs) booting the reference image directly (domain_xml.h): console into
// ARTEFACTS/console.log, the guest agent on the second serial port (the same
// guest protocol as the QEMU backend, so the same agent works), an ISA panic
// device. The agent's port is a pty on the host that the lab opens as a
// libvirt stream (console_bridge.h), so it works over any connection,
// qemu+ssh:// included: the domain starts paused, the stream opens, the
// domain resumes, and the lab waits for the agent's ready line. Lifecycle and crash events come
// from libvirt's event API (transient_domain.h); a host whose connection drops ends its VMs with a
// kVmExited event. Shutdown writes the domain's CPU and memory figures as libvirt reports them to
// ARTEFACTS/libvirt-stats.json.
//
// Acceleration: "kvm" when the host's capabilities list KVM *and* a probe boot
// of the image under KVM reaches the agent within kvm_probe_timeout (some hosts
// list KVM that fails or spins); otherwise "qemu" (TCG). Probed once per
// backend unless forced in the options.
//
// Files: a local host (URI without a server) reads the image where it is and
// writes the console log into the lab's artefacts folder. A remote host gets
// the image uploaded into a storage pool (image_upload.h), and its console
// (serial0) is a pty streamed into the lab's console.log like the agent's
// port, so no folder needs sharing (ConsoleLogPlacement).
//
// Ownership: every domain names this lab process in its metadata, and Open /
// OnHost destroy the domains of lab processes that died (domain_owner.h):
// restored domains are not autodestroyed by libvirt.
//
// Fast restore: SaveReady saves the ready domain (virDomainSave) and restores
// it at once; RestoreReady restores a saved state under a new console log and
// agent socket. libvirt keeps a saved domain's name and UUID, so one state
// file serves one live domain at a time: when every saved copy of a state is
// in use, RestoreReady boots a fresh VM and saves it as a further copy, so the
// copies grow to the number of VMs run at once and later restores are fast.
//
// Errors as VmBackend: kInfra naming the host URI and domain.
// Thread-safety: as VmBackend (Boot/RestoreReady concurrently).
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "base/error.h"
#include "harness/libvirt/image_upload.h"
#include "harness/libvirt/libvirt_host.h"
#include "harness/libvirt/transient_domain.h"
#include "harness/vm/qemu_backend.h"  // KvmProbe
#include "harness/vm/vm_backend.h"

namespace patchlab::harness {

enum class ImagePlacement {
  kAuto,        // local host: paths as they are; remote host: upload
  kDirectPath,  // the host sees the image at the same paths (shared storage)
  kUpload,      // always upload into the pool
};

enum class ConsoleLogPlacement {
  kAuto,      // local host: the host's QEMU writes it; remote host: streamed
  kHostFile,  // the host's QEMU writes ARTEFACTS/console.log (same path on its side)
  kStreamed,  // serial0 is a pty streamed over the connection into the lab's file
};

struct LibvirtBackendOptions {
  std::string uri = "qemu:///system";
  std::optional<Accelerator> accelerator;  // nullopt: probe
  std::chrono::milliseconds kvm_probe_timeout{15000};
  std::chrono::milliseconds heartbeat_threshold{5000};
  ImagePlacement placement = ImagePlacement::kAuto;
  ImagePoolSpec pool;
  std::string machine = "pc";
  ConsoleLogPlacement console_log = ConsoleLogPlacement::kAuto;
  LibvirtHostOptions host;
  // Refuse hosts whose capabilities offer no x86_64 hvm guest. Off only for
  // libvirt's test driver in unit tests (it offers i686 only).
  bool require_x86_64 = true;
};

class LibvirtBackend : public VmBackend {
 public:
  // Connects to options.uri and checks that it can run x86_64 guests, then
  // destroys the domains dead lab processes left there (domain_owner.h).
  // kInfra naming the URI when it cannot.
  static Result<std::unique_ptr<LibvirtBackend>> Open(LibvirtBackendOptions options);
  // Over an already open host (a fleet shares its connections).
  static Result<std::unique_ptr<LibvirtBackend>> OnHost(std::shared_ptr<LibvirtHost> host,
                                                        LibvirtBackendOptions options);
  ~LibvirtBackend() override;

  std::string_view Name() const override { return "libvirt"; }
  Result<std::unique_ptr<Vm>> Boot(const VmImage& image, const VmSpec& spec) override;
  Result<ReadyState> SaveReady(Vm& vm, const std::filesystem::path& file) override;
  Result<std::unique_ptr<Vm>> RestoreReady(const ReadyState& state, const VmSpec& spec) override;

  // The accelerator used for `image` on this host (probing on first use).
  KvmProbe ChooseAccelerator(const VmImage& image);
  const std::shared_ptr<LibvirtHost>& host() const;
  const LibvirtBackendOptions& options() const;

  struct Impl;

 private:
  explicit LibvirtBackend(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

// The libvirt side of a Vm this backend made: its host, domain and figures.
// (Vm& from LibvirtBackend can be asked with AsLibvirtVm; nullptr otherwise.)
class LibvirtVmInfo {
 public:
  virtual ~LibvirtVmInfo() = default;
  virtual std::string HostName() const = 0;  // the host URI
  virtual std::string DomainName() const = 0;
  virtual Result<DomainStats> Stats() = 0;
};
LibvirtVmInfo* AsLibvirtVm(Vm& vm);

}  // namespace patchlab::harness

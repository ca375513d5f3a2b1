// QemuBackend: VmBackend that runs qemu-system-x86_64 directly.
//
// Each VM is one QEMU process: machine pc, -nodefaults -no-reboot, the image's
// kernel and initramfs (-kernel/-initrd/-append), the console on the first
// serial port into console.log, the agent channel on the second serial port as
// a unix socket (the host connects first, then waits for the ready line), a QMP
// socket for status, events (GUEST_PANICKED from pvpanic with -action
// panic=pause) and quit, all inside the VM's artefacts dir.
//
// Acceleration: KVM is probed once per host (a real boot of the image with a
// timeout, since on some hosts /dev/kvm exists but KVM fails or spins) and the
// answer is cached in CACHE/kvm-probe.json; otherwise TCG.
//
// Fast restore: SaveReady migrates the ready VM to a file (QMP migrate
// "exec:cat > FILE"); RestoreReady starts QEMU with -incoming "exec:cat FILE",
// waits for query-status "running", and only then talks on the agent channel
// (bytes sent earlier are lost). Parallel restores may share one file.
//
// Thread-safety: as VmBackend.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "base/error.h"
#include "harness/vm/vm_backend.h"

namespace patchlab::harness {

struct QemuBackendOptions {
  std::filesystem::path qemu = "qemu-system-x86_64";  // looked up in PATH
  // nullopt: probe (cached). Set to force an accelerator (tests, benchmarks).
  std::optional<Accelerator> accelerator;
  std::filesystem::path cache_dir;  // for the probe cache; empty: DefaultCacheDir()
  std::chrono::milliseconds kvm_probe_timeout{15000};
  std::chrono::milliseconds heartbeat_threshold{5000};
};

// The outcome of the KVM probe, with the reason when KVM is not used.
struct KvmProbe {
  Accelerator accelerator = Accelerator::kTcg;
  std::string reason;  // "no /dev/kvm", "KVM guest did not reach init within 15 s", "ok"
  bool cached = false;
};

// Probes whether KVM can boot `image` with `cpu_model` to init within `timeout`
// (uncached). Never fails: any problem means TCG, with the reason.
KvmProbe ProbeKvm(const std::filesystem::path& qemu, const VmImage& image,
                  const std::string& cpu_model, std::chrono::milliseconds timeout);

class QemuBackend : public VmBackend {
 public:
  explicit QemuBackend(QemuBackendOptions options);
  ~QemuBackend() override;

  std::string_view Name() const override { return "qemu"; }
  Result<std::unique_ptr<Vm>> Boot(const VmImage& image, const VmSpec& spec) override;
  Result<ReadyState> SaveReady(Vm& vm, const std::filesystem::path& file) override;
  Result<std::unique_ptr<Vm>> RestoreReady(const ReadyState& state, const VmSpec& spec) override;

  // The accelerator for `image` and `cpu_model` (probing on first use, then
  // cached in memory and on disk).
  KvmProbe ChooseAccelerator(const VmImage& image, const std::string& cpu_model);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace patchlab::harness

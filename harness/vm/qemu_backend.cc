#include "harness/vm/qemu_backend.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/file_util.h"
#include "base/log.h"
#include "base/subprocess.h"
#include "harness/vm/image_store.h"
#include "harness/vm/internal/qemu_vm.h"

namespace patchlab::harness {
namespace fs = std::filesystem;
using internal::QemuLaunch;
using internal::QemuVm;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

KvmProbe ProbeKvm(const fs::path& qemu, const VmImage& image, const std::string& cpu_model,
                  milliseconds timeout) {
  KvmProbe probe;
  int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    probe.reason = fmt::format("/dev/kvm cannot be opened ({})", std::strerror(errno));
    return probe;
  }
  ::close(fd);
  // /dev/kvm can exist while KVM fails (emulation failure) or spins (nested
  // KVM): only a real boot to init within a deadline proves it works.
  SubprocessOptions o;
  o.argv = {qemu.string(),
            "-machine",
            "pc",
            "-accel",
            "kvm",
            "-cpu",
            cpu_model,
            "-m",
            "256",
            "-nodefaults",
            "-no-reboot",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-kernel",
            image.kernel.string(),
            "-initrd",
            image.initrd.string(),
            "-append",
            "console=ttyS0 panic=-1 rdinit=/bare-init"};
  o.stderr_to_stdout = true;
  o.timeout = timeout;
  o.kill_grace = milliseconds(200);
  auto r = RunSubprocess(std::move(o));
  if (!r) {
    probe.reason = "cannot run QEMU: " + r.error().ToString();
  } else if (r->stdout_data.find("patchlab-bare: init reached") != std::string::npos) {
    probe.accelerator = Accelerator::kKvm;
    probe.reason = "ok";
  } else if (r->status.timed_out) {
    probe.reason = fmt::format("a KVM guest did not reach init within {} ms", timeout.count());
  } else {
    std::string out = r->stdout_data;
    size_t nl = out.find('\n');
    probe.reason = fmt::format("KVM boot failed ({}): {}", r->status.ToString(),
                               out.substr(0, std::min<size_t>(nl, 200)));
  }
  return probe;
}

struct QemuBackend::Impl {
  QemuBackendOptions options;
  std::mutex mu;
  std::map<std::string, KvmProbe> probes;  // by cpu model
};

QemuBackend::QemuBackend(QemuBackendOptions options) : impl_(std::make_unique<Impl>()) {
  if (options.cache_dir.empty()) options.cache_dir = DefaultCacheDir();
  impl_->options = std::move(options);
}

QemuBackend::~QemuBackend() = default;

KvmProbe QemuBackend::ChooseAccelerator(const VmImage& image, const std::string& cpu_model) {
  const QemuBackendOptions& o = impl_->options;
  if (o.accelerator) return {*o.accelerator, "forced by the caller", true};
  std::lock_guard lock(impl_->mu);
  if (auto it = impl_->probes.find(cpu_model); it != impl_->probes.end()) return it->second;
  // The answer depends on the host kernel, the QEMU binary and the CPU model;
  // it is kept on disk so each host pays for the probe once.
  utsname uts{};
  ::uname(&uts);
  struct stat st {};
  std::string qemu_path = o.qemu.string();
  if (o.qemu.is_relative()) {
    auto which = RunSubprocess({.argv = {"sh", "-c", "command -v " + qemu_path}});
    if (which && which->status.Success())
      qemu_path = which->stdout_data.substr(0, which->stdout_data.find('\n'));
  }
  ::stat(qemu_path.c_str(), &st);
  std::string key = fmt::format("{} {} {} {}", uts.release, qemu_path,
                                static_cast<long long>(st.st_mtime), cpu_model);
  fs::path cache_file = o.cache_dir / "kvm-probe.json";
  nlohmann::json cache = nlohmann::json::object();
  if (auto text = ReadFile(cache_file)) {
    cache = nlohmann::json::parse(*text, nullptr, false);
    if (!cache.is_object()) cache = nlohmann::json::object();
  }
  if (cache.contains(key) && cache[key].is_object()) {
    KvmProbe p;
    p.accelerator =
        cache[key].value("accelerator", "tcg") == "kvm" ? Accelerator::kKvm : Accelerator::kTcg;
    p.reason = cache[key].value("reason", "");
    p.cached = true;
    impl_->probes[cpu_model] = p;
    return p;
  }
  KvmProbe p = ProbeKvm(o.qemu, image, cpu_model, o.kvm_probe_timeout);
  Log("harness")->info("KVM probe for {}: {} ({})", cpu_model, AcceleratorName(p.accelerator),
                       p.reason);
  cache[key] = {{"accelerator", AcceleratorName(p.accelerator)}, {"reason", p.reason}};
  if (MakeDirs(o.cache_dir)) (void)WriteFileAtomic(cache_file, cache.dump(2) + "\n");
  impl_->probes[cpu_model] = p;
  return p;
}

Result<std::unique_ptr<Vm>> QemuBackend::Boot(const VmImage& image, const VmSpec& spec) {
  QemuLaunch launch{impl_->options.qemu, image, spec,
                    ChooseAccelerator(image, spec.cpu_model).accelerator, std::nullopt};
  auto vm = QemuVm::Start(std::move(launch));
  if (!vm) return std::unexpected(vm.error());
  Log("harness")->debug("booted {}", (*vm)->Describe());
  return std::unique_ptr<Vm>(std::move(*vm));
}

Result<ReadyState> QemuBackend::SaveReady(Vm& vm, const fs::path& file) {
  auto* qvm = dynamic_cast<QemuVm*>(&vm);
  if (qvm == nullptr) std::abort();  // a Vm of another backend: a bug in the caller
  internal::QmpClient& qmp = qvm->qmp();
  if (auto s = MakeDirs(file.parent_path()); !s) return std::unexpected(s.error());
  fs::path tmp = file.string() + fmt::format(".tmp-{}", ::getpid());
  // QEMU's default bandwidth cap would make a 50 MiB save take over a second.
  if (auto r = qmp.Execute("migrate-set-parameters", {{"max-bandwidth", int64_t{1} << 40}}); !r) {
    return std::unexpected(r.error());
  }
  if (auto r = qmp.Execute("migrate", {{"uri", fmt::format("exec:cat > {}", tmp.string())}}); !r) {
    return std::unexpected(
        std::move(r.error()).AddContext("saving the ready state of " + vm.spec().name));
  }
  auto deadline = Clock::now() + std::chrono::seconds(120);
  while (true) {
    auto r = qmp.Execute("query-migrate");
    if (!r) return std::unexpected(r.error());
    std::string status = r->value("status", "");
    if (status == "completed") break;
    if (status == "failed" || status == "cancelled" || Clock::now() > deadline) {
      std::error_code ec;
      fs::remove(tmp, ec);
      return Fail(ErrorCode::kInfra, "saving {}: migration {} ({})", vm.spec().name,
                  status == "failed" || status == "cancelled" ? status : "timed out",
                  r->value("error-desc", ""));
    }
    std::this_thread::sleep_for(milliseconds(10));
  }
  std::error_code ec;
  fs::rename(tmp, file, ec);
  if (ec)
    return Fail(ErrorCode::kIo, "rename {} -> {}: {}", tmp.string(), file.string(), ec.message());
  // The source stops when migration completes; let it carry on as promised.
  if (auto r = qmp.Execute("cont"); !r)
    return std::unexpected(std::move(r.error()).AddContext("resuming after save"));
  ReadyState state{"qemu", file, vm.image(), vm.spec()};
  return state;
}

Result<std::unique_ptr<Vm>> QemuBackend::RestoreReady(const ReadyState& state, const VmSpec& spec) {
  if (state.backend != "qemu") {
    return Fail(ErrorCode::kInvalidArgument, "ready state {} was made by the {} backend, not qemu",
                state.file.string(), state.backend);
  }
  if (spec.cpu_model != state.spec.cpu_model || spec.smp != state.spec.smp ||
      spec.memory_mib != state.spec.memory_mib ||
      spec.count_instructions != state.spec.count_instructions) {
    auto clock = [](const VmSpec& s) { return s.count_instructions ? ", icount" : ""; };
    return Fail(ErrorCode::kInvalidArgument,
                "restore of {} needs cpu {} x{} with {} MiB{} as saved, got {} x{} with {} MiB{}",
                state.file.string(), state.spec.cpu_model, state.spec.smp, state.spec.memory_mib,
                clock(state.spec), spec.cpu_model, spec.smp, spec.memory_mib, clock(spec));
  }
  if (!fs::exists(state.file))
    return Fail(ErrorCode::kInfra, "ready state {} does not exist", state.file.string());
  VmSpec restored = spec;
  // The guest's command line is in the saved memory; keep QEMU's -append equal to it.
  restored.extra_kernel_args = state.spec.extra_kernel_args;
  QemuLaunch launch{impl_->options.qemu, state.image, restored,
                    ChooseAccelerator(state.image, spec.cpu_model).accelerator, state.file};
  auto vm = QemuVm::Start(std::move(launch));
  if (!vm) return std::unexpected(vm.error());
  return std::unique_ptr<Vm>(std::move(*vm));
}

}  // namespace patchlab::harness

#include "harness/lab/internal/runner_vm_guest.h"

#include <algorithm>
#include <map>
#include <mutex>

#include "base/file_util.h"
#include "base/log.h"
#include "harness/libvirt/fleet_backend.h"
#include "harness/vm/image_store.h"
#include "harness/vm/qemu_backend.h"

namespace patchlab::harness::internal {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

// Under TCG a busy guest can go quiet for a while; only a long silence is a hang.
constexpr milliseconds kHeartbeatThreshold{10000};
constexpr milliseconds kCallTimeout{60000};
constexpr const char* kScratch = "/tmp/cell";

// An agent-side failure that is not the machine's: the guest answered.
bool IsMachineFailure(const Error& e) {
  return e.code() == ErrorCode::kInfra || e.code() == ErrorCode::kTimeout;
}

template <typename T>
Result<T> AsInfra(Result<T> r, std::string_view what) {
  if (!r && IsMachineFailure(r.error())) {
    return std::unexpected(
        Error(ErrorCode::kInfra, fmt::format("{}: {}", what, r.error().ToString())));
  }
  return r;
}

class VmGuest : public CellGuest {
 public:
  VmGuest(std::unique_ptr<Vm> vm, fs::path artefacts)
      : vm_(std::move(vm)), artefacts_(std::move(artefacts)), host_(VmHostName(*vm_)) {}
  ~VmGuest() override { (void)Shutdown(); }

  Status Init() {
    auto mark = AsInfra(vm_->agent().KernelLogMark(), "kmsg_mark");
    if (!mark) return std::unexpected(mark.error());
    mark_ = *mark;
    ExecRequest mk;
    mk.argv = {"/bin/mkdir", "-p", kScratch};
    auto r = AsInfra(vm_->agent().Run(mk, kCallTimeout), "mkdir " + std::string(kScratch));
    if (!r) return std::unexpected(r.error());
    if (!r->exit.exited || r->exit.code != 0) {
      return Fail(ErrorCode::kInfra, "mkdir {} in the guest: {} {}", kScratch, r->exit.ToString(),
                  r->stderr_data);
    }
    return {};
  }

  Status Put(const std::string& guest_path, mode_t mode, std::string_view bytes) override {
    return AsInfra(vm_->agent().Put(guest_path, mode, bytes), "put " + guest_path);
  }

  Result<std::string> Get(const std::string& guest_path) override {
    return AsInfra(vm_->agent().Get(guest_path), "get " + guest_path);
  }

  Result<pid_t> Exec(const ExecRequest& request) override {
    return AsInfra(vm_->agent().Exec(request), "exec " + request.argv.at(0));
  }

  Result<ExitStatus> Wait(pid_t pid, milliseconds wait_for) override {
    return AsInfra(vm_->agent().Wait(pid, wait_for), "wait");
  }

  Status Kill(pid_t pid, int signal) override {
    return AsInfra(vm_->agent().Kill(pid, signal), "kill");
  }

  Result<ProcessSample> Sample(pid_t pid) override {
    return AsInfra(vm_->agent().Sample(pid), "sample");
  }

  Result<RunResult> Run(const ExecRequest& request, milliseconds run_for) override {
    return AsInfra(vm_->agent().Run(request, run_for), "run " + request.argv.at(0));
  }

  Result<std::vector<ProcessCpu>> Processes(const std::string& program) override {
    return AsInfra(vm_->agent().Processes(program), "procs " + program);
  }

  Result<HotpatchResult> Hotpatch(const std::string& subcommand, std::vector<std::string> args,
                                  milliseconds run_for) override {
    return AsInfra(vm_->agent().Hotpatch(subcommand, std::move(args), run_for),
                   "hotpatch " + subcommand);
  }

  Result<std::string> KernelLogSince() override {
    auto lines = AsInfra(vm_->agent().KernelLog(mark_), "kmsg");
    if (!lines) return std::unexpected(lines.error());
    std::string out;
    for (const auto& l : *lines) {
      out += l.text + "\n";
      mark_ = std::max(mark_, l.seq);
    }
    kernel_log_ += out;
    return out;
  }

  std::vector<Crash> MachineCrashes() override {
    return ClassifyVmEvents(vm_->PollEvents(kHeartbeatThreshold));
  }

  std::string ScratchDir() const override { return kScratch; }
  std::string Host() const override { return host_; }
  metrics::CpuClock Clock() const override {
    return vm_ && vm_->CountsInstructions() ? metrics::CpuClock::kGuestInstructions
                                            : metrics::CpuClock::kGuestCpuTime;
  }

  Status Shutdown() override {
    if (!vm_) return {};
    (void)WriteFileAtomic(artefacts_ / "kernel.log", kernel_log_);
    Status s = vm_->Shutdown(milliseconds(3000));
    vm_.reset();
    return s;
  }

 private:
  std::unique_ptr<Vm> vm_;
  fs::path artefacts_;
  std::string host_;  // libvirt host URI; empty for QEMU on this machine
  uint64_t mark_ = 0;
  std::string kernel_log_;
};

class VmGuestFactory : public GuestFactory {
 public:
  VmGuestFactory(ImageStore store, fs::path state_dir, std::unique_ptr<VmBackend> backend)
      : store_(std::move(store)), backend_(std::move(backend)), state_dir_(std::move(state_dir)) {}

  Result<std::unique_ptr<CellGuest>> Start(const GuestSpec& spec) override {
    auto image = Image(spec.image);
    if (!image) return std::unexpected(image.error());
    VmSpec vs;
    vs.cpu_model = spec.cpu;
    vs.smp = spec.count_instructions ? 1 : spec.vcpus;
    vs.count_instructions = spec.count_instructions;
    vs.memory_mib = spec.memory_mib;
    // Every image holds its root in an initramfs: below its recipe's
    // memory_mib the kernel cannot unpack it (a Debian system panics at boot;
    // a busybox image boots with the files at the archive's end missing,
    // hotpatch and the cell's own files among them).
    if (auto recipe = store_.Recipe(spec.image))
      vs.memory_mib = std::max(vs.memory_mib, recipe->memory_mib);
    vs.artefacts_dir = spec.artefacts;
    vs.name = spec.image + "-" + spec.cpu;
    // The machine's key: a ready state saved under icount (one vCPU) or with
    // another memory size (a Debian-system image's) restores only as saved.
    std::string key = fmt::format("{}-{}-{}x{}{}", spec.image, spec.cpu, vs.smp, vs.memory_mib,
                                  vs.count_instructions ? "-icount" : "");
    std::mutex* key_mu;
    {
      std::lock_guard<std::mutex> lock(mu_);
      key_mu = &key_locks_[key];
    }
    std::unique_ptr<Vm> vm;
    {
      // One boot per key saves the ready state; the other cells wait and restore.
      std::lock_guard<std::mutex> key_lock(*key_mu);
      std::optional<ReadyState> state;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (auto it = states_.find(key); it != states_.end()) state = it->second;
      }
      if (state) {
        auto restored = backend_->RestoreReady(*state, vs);
        if (restored) {
          vm = std::move(*restored);
        } else {
          Log("harness")->warn("{}: restore failed ({}); booting", key,
                               restored.error().ToString());
        }
      }
      if (!vm) {
        auto booted = backend_->Boot(*image, vs);
        if (!booted) return std::unexpected(Error(ErrorCode::kInfra, booted.error().ToString()));
        vm = std::move(*booted);
        if (!state) {
          (void)MakeDirs(state_dir_);
          auto saved = backend_->SaveReady(*vm, state_dir_ / (key + ".state"));
          if (saved) {
            std::lock_guard<std::mutex> lock(mu_);
            states_[key] = *saved;
          } else {
            Log("harness")->warn("{}: saving the ready state failed ({}); later cells boot", key,
                                 saved.error().ToString());
          }
        }
      }
    }
    auto guest = std::make_unique<VmGuest>(std::move(vm), spec.artefacts);
    if (auto s = guest->Init(); !s) return std::unexpected(s.error());
    return std::unique_ptr<CellGuest>(std::move(guest));
  }

  std::vector<std::string> DefaultCpus(const std::string& image) override {
    auto r = store_.Recipe(image);
    if (!r || r->cpus.empty()) return {"qemu64"};
    return r->cpus;
  }

  bool DefaultFor(const std::string& image, bool built_target) override {
    auto r = store_.Recipe(image);
    return r && r->system.has_value() != built_target;
  }

  std::vector<std::string> Images() override {
    std::vector<std::string> out;
    for (const auto& r : store_.recipes()) out.push_back(r.name);
    return out;
  }

  std::optional<std::pair<std::string, std::string>> Describe(const std::string& image) override {
    auto i = Image(image);
    if (!i) return std::nullopt;
    return std::pair{i->kernel_release, i->content_hash};
  }

 private:
  // Builds (or finds in the cache) an image once per run.
  Result<VmImage> Image(const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = images_.find(name); it != images_.end()) return it->second;
    auto built = store_.Build(name);
    if (!built) {
      return std::unexpected(
          Error(ErrorCode::kInfra, fmt::format("image {}: {}", name, built.error().ToString())));
    }
    images_.emplace(name, *built);
    return *built;
  }

  std::mutex mu_;
  ImageStore store_;
  std::unique_ptr<VmBackend> backend_;
  fs::path state_dir_;
  std::map<std::string, VmImage> images_;
  std::map<std::string, ReadyState> states_;
  std::map<std::string, std::mutex> key_locks_;
};

}  // namespace

Result<std::unique_ptr<GuestFactory>> MakeVmGuestFactory(const fs::path& recipes,
                                                         const fs::path& state_dir) {
  return MakeVmGuestFactory(recipes, state_dir,
                            std::make_unique<QemuBackend>(QemuBackendOptions{}));
}

Result<std::unique_ptr<GuestFactory>> MakeVmGuestFactory(const fs::path& recipes,
                                                         const fs::path& state_dir,
                                                         std::unique_ptr<VmBackend> backend) {
  LabBinaries bins = LocateLabBinaries();
  ImageStoreOptions o;
  o.recipes = recipes;
  o.cache_dir = DefaultCacheDir();
  o.agent_binary = bins.agent;
  o.hotpatch_binary = bins.hotpatch;
  auto store = ImageStore::Open(o);
  if (!store)
    return std::unexpected(std::move(store.error()).AddContext("opening the image store"));
  return std::unique_ptr<GuestFactory>(
      new VmGuestFactory(std::move(*store), state_dir, std::move(backend)));
}

}  // namespace patchlab::harness::internal

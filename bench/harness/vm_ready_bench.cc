// Time to a usable VM, under whatever accelerator this host gives (TCG here):
//   bare     qemu-system-x86_64 -kernel -initrd of the same image, rdinit=/bare-init,
//            from QEMU start to the guest printing its first line from init;
//   cold     QemuBackend::Boot, from QEMU start to the agent's ready line;
//   restore  QemuBackend::RestoreReady, from QEMU start to the agent answering.
// Each iteration measures all three back to back, so load on the shared machine
// hits them alike; the counters are medians and the ratios cold/bare and
// restore/bare. Goals (issue 5): cold <= 1.15 x bare, restore <= 0.25 s.
//
//   build/vm/bench/harness/harness_vm_bench --benchmark_filter=BM_VmReady
#include <benchmark/benchmark.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>
#include <vector>

#include "base/file_util.h"
#include "base/subprocess.h"
#include "harness/vm/image_store.h"
#include "harness/vm/qemu_backend.h"

namespace patchlab::harness {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n == 0 ? 0 : (n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2);
}

// Bare boot: QEMU with the console in a file, watched until init's first line
// appears; then QEMU is killed (the time to power off does not count).
double BareBootSeconds(const VmImage& image, Accelerator accel, const fs::path& dir) {
  fs::create_directories(dir);
  fs::path console = dir / "bare-console.log";
  fs::remove(console);
  SubprocessOptions o;
  o.argv = {"qemu-system-x86_64",
            "-machine",
            "pc",
            "-accel",
            accel == Accelerator::kKvm ? "kvm" : "tcg",
            "-cpu",
            "qemu64",
            "-m",
            "256",
            "-nodefaults",
            "-no-reboot",
            "-display",
            "none",
            "-serial",
            "file:" + console.string(),
            "-kernel",
            image.kernel.string(),
            "-initrd",
            image.initrd.string(),
            "-append",
            "console=ttyS0,115200 loglevel=7 print-fatal-signals=1 panic=-1 init_on_free=1 "
            "rdinit=/bare-init"};
  o.stdout_mode = OutputMode::kNull;
  o.stderr_mode = OutputMode::kNull;
  auto start = Clock::now();
  auto p = Subprocess::Start(std::move(o));
  if (!p) return -1;
  while (Clock::now() - start < std::chrono::seconds(120)) {
    auto text = ReadFile(console);
    if (text && text->find("patchlab-bare: init reached") != std::string::npos) {
      double t = std::chrono::duration<double>(Clock::now() - start).count();
      (void)p->Signal(SIGKILL);
      (void)p->Wait();
      return t;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return -1;
}

void BM_VmReady_ColdRestoreVsBare(benchmark::State& state) {
  ImageStoreOptions so;
  so.recipes = fs::path(PATCHLAB_SOURCE_DIR) / "vm-images/images.yaml";
  so.cache_dir = DefaultCacheDir();
  so.agent_binary = PATCHLAB_AGENT_BINARY;
  auto store = ImageStore::Open(so);
  if (!store) return state.SkipWithError(store.error().ToString().c_str());
  auto image = store->Build("debian12-cloud");
  if (!image) return state.SkipWithError(image.error().ToString().c_str());
  QemuBackend backend({});
  Accelerator accel = backend.ChooseAccelerator(*image, "qemu64").accelerator;
  fs::path dir = fs::temp_directory_path() / fmt::format("patchlab-bench-{}", ::getpid());
  VmSpec spec;
  spec.cpu_model = "qemu64";
  spec.memory_mib = 512;  // the image's own: its initramfs (~80 MB) unpacks into RAM
  std::vector<double> bare, cold, restore;
  std::optional<ReadyState> ready;
  int n = 0;
  for (auto _ : state) {
    ++n;
    double b = BareBootSeconds(*image, accel, dir);
    if (b < 0) return state.SkipWithError("bare boot did not reach init");
    bare.push_back(b);

    spec.name = fmt::format("cold-{}", n);
    spec.artefacts_dir = dir / spec.name;
    auto start = Clock::now();
    auto vm = backend.Boot(*image, spec);
    if (!vm) return state.SkipWithError(vm.error().ToString().c_str());
    cold.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    if (!ready) {
      auto saved = backend.SaveReady(**vm, dir / "ready.state");
      if (!saved) return state.SkipWithError(saved.error().ToString().c_str());
      ready = *saved;
    }
    (void)(*vm)->Shutdown(std::chrono::seconds(2));

    spec.name = fmt::format("restore-{}", n);
    spec.artefacts_dir = dir / spec.name;
    start = Clock::now();
    auto restored = backend.RestoreReady(*ready, spec);
    if (!restored) return state.SkipWithError(restored.error().ToString().c_str());
    restore.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    (void)(*restored)->Shutdown(std::chrono::seconds(2));
  }
  double mb = Median(bare), mc = Median(cold), mr = Median(restore);
  state.counters["bare_s"] = mb;
  state.counters["cold_s"] = mc;
  state.counters["restore_s"] = mr;
  state.counters["cold_over_bare"] = mc / mb;
  state.counters["restore_over_bare"] = mr / mb;
  state.SetLabel(fmt::format("{} medians of {}", AcceleratorName(accel), n));
  std::error_code ec;
  fs::remove_all(dir, ec);
}
BENCHMARK(BM_VmReady_ColdRestoreVsBare)->Iterations(5)->Unit(benchmark::kSecond)->UseRealTime();

}  // namespace
}  // namespace patchlab::harness

BENCHMARK_MAIN();

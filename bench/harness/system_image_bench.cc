// A real Debian system image (mmdebstrap, booted from the initramfs) beside the
// small busybox image, in one run, under whatever accelerator this host gives:
//   build    ImageStore::Build of each image with its ingredients cached (the
//            Debian system and the kernel package are made once; what a run
//            pays is packing and hashing the initramfs);
//   cold     QemuBackend::Boot, from QEMU start to the agent's ready line;
//   restore  QemuBackend::RestoreReady, from QEMU start to the agent answering;
//   state    the saved ready state's size.
// Iterations alternate the two images, so load on the shared machine hits both
// alike. Counters are medians; the ratios are system / busybox. Goal (issue 14):
// restore of the system image <= 2 x the busybox image's.
//
//   build/ci/bench/harness/harness_system_image_bench
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <vector>

#include "harness/vm/image_store.h"
#include "harness/vm/qemu_backend.h"

namespace patchlab::harness {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr const char* kBusyboxImage = "debian12-cloud";
constexpr const char* kSystemImage = "debian12-apps";

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n == 0 ? 0 : (n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2);
}

double Since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

struct Figures {
  std::vector<double> build, cold, restore;
  double state_mib = 0;
};

// One iteration for one image: build (cached ingredients), boot, save once, restore.
Status Measure(ImageStore& store, QemuBackend& backend, const std::string& name,
               const fs::path& dir, int n, Figures& f, std::optional<ReadyState>& ready) {
  auto start = Clock::now();
  auto image = store.Build(name);
  if (!image) return std::unexpected(image.error());
  f.build.push_back(Since(start));
  auto recipe = store.Recipe(name);
  if (!recipe) return std::unexpected(recipe.error());
  VmSpec spec;
  spec.cpu_model = "qemu64";
  spec.memory_mib = recipe->memory_mib;
  spec.name = fmt::format("apps-bench-{}-cold-{}", name, n);
  spec.artefacts_dir = dir / spec.name;
  start = Clock::now();
  auto vm = backend.Boot(*image, spec);
  if (!vm) return std::unexpected(vm.error());
  f.cold.push_back(Since(start));
  if (!ready) {
    auto saved = backend.SaveReady(**vm, dir / (name + ".state"));
    if (!saved) return std::unexpected(saved.error());
    ready = *saved;
    f.state_mib = static_cast<double>(fs::file_size(saved->file)) / (1024.0 * 1024.0);
  }
  (void)(*vm)->Shutdown(std::chrono::seconds(2));
  spec.name = fmt::format("apps-bench-{}-restore-{}", name, n);
  spec.artefacts_dir = dir / spec.name;
  start = Clock::now();
  auto restored = backend.RestoreReady(*ready, spec);
  if (!restored) return std::unexpected(restored.error());
  f.restore.push_back(Since(start));
  (void)(*restored)->Shutdown(std::chrono::seconds(2));
  return {};
}

void BM_SystemImage_VsBusybox(benchmark::State& state) {
  ImageStoreOptions so;
  so.recipes = fs::path(PATCHLAB_SOURCE_DIR) / "vm-images/images.yaml";
  so.cache_dir = DefaultCacheDir();
  so.agent_binary = PATCHLAB_AGENT_BINARY;
  so.hotpatch_binary = PATCHLAB_HOTPATCH_BINARY;
  auto store = ImageStore::Open(so);
  if (!store) return state.SkipWithError(store.error().ToString().c_str());
  QemuBackend backend({});
  fs::path dir = fs::temp_directory_path() / fmt::format("patchlab-apps-bench-{}", ::getpid());
  Figures busybox, system;
  std::optional<ReadyState> busybox_ready, system_ready;
  int n = 0;
  for (auto _ : state) {
    ++n;
    if (auto s = Measure(*store, backend, kBusyboxImage, dir, n, busybox, busybox_ready); !s)
      return state.SkipWithError(s.error().ToString().c_str());
    if (auto s = Measure(*store, backend, kSystemImage, dir, n, system, system_ready); !s)
      return state.SkipWithError(s.error().ToString().c_str());
  }
  state.counters["busybox_build_s"] = Median(busybox.build);
  state.counters["system_build_s"] = Median(system.build);
  state.counters["busybox_cold_s"] = Median(busybox.cold);
  state.counters["system_cold_s"] = Median(system.cold);
  state.counters["busybox_restore_s"] = Median(busybox.restore);
  state.counters["system_restore_s"] = Median(system.restore);
  state.counters["busybox_state_mib"] = busybox.state_mib;
  state.counters["system_state_mib"] = system.state_mib;
  state.counters["cold_ratio"] = Median(system.cold) / Median(busybox.cold);
  state.counters["restore_ratio"] = Median(system.restore) / Median(busybox.restore);
  state.SetLabel(fmt::format("medians of {}", n));
  std::error_code ec;
  fs::remove_all(dir, ec);
}
BENCHMARK(BM_SystemImage_VsBusybox)->Iterations(5)->Unit(benchmark::kSecond)->UseRealTime();

}  // namespace
}  // namespace patchlab::harness

BENCHMARK_MAIN();

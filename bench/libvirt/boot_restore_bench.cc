// bench_libvirt_boot: create-to-agent-ready and restore-to-agent-ready through
// libvirt (a private libvirtd, LibvirtBackend) against the same through the
// direct QEMU backend (QemuBackend), in one run on one image, both under TCG.
//
// The two backends alternate round by round so machine noise hits both
// alike; the result is each median and the ratio libvirt / qemu. Run as root:
//   bench_libvirt_boot [--rounds N]     (default 5)
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "harness/libvirt/libvirt_backend.h"
#include "harness/vm/qemu_backend.h"
#include "tests/libvirt/libvirtd_fixture.h"
#include "tests/libvirt/test_image.h"

namespace fs = std::filesystem;
using namespace patchlab;
using namespace patchlab::harness;
using Clock = std::chrono::steady_clock;

namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

VmSpec Spec(const fs::path& dir, const std::string& name) {
  VmSpec s;
  s.name = name;
  s.memory_mib = 512;  // the image's own: its initramfs (~80 MB) unpacks into RAM
  s.artefacts_dir = dir / name;
  s.boot_timeout = std::chrono::seconds(120);
  return s;
}

// Seconds from the call to a Vm whose agent answered a hello.
template <typename Start>
double Time(Start start, std::unique_ptr<Vm>* out) {
  Clock::time_point t0 = Clock::now();
  auto vm = start();
  if (!vm) {
    std::fprintf(stderr, "failed: %s\n", vm.error().ToString().c_str());
    std::exit(1);
  }
  if (auto h = (*vm)->agent().Hello(); !h) {
    std::fprintf(stderr, "no hello: %s\n", h.error().ToString().c_str());
    std::exit(1);
  }
  double s = std::chrono::duration<double>(Clock::now() - t0).count();
  *out = std::move(*vm);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 5;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
      rounds = std::max(1, std::atoi(argv[++i]));
  }
  if (::geteuid() != 0) {
    std::fprintf(stderr, "bench_libvirt_boot: needs root (a private libvirtd)\n");
    return 2;
  }
  auto image = testing::LabImage(PATCHLAB_SOURCE_DIR, PATCHLAB_AGENT_BINARY);
  if (!image) {
    std::fprintf(stderr, "no image: %s\n", image.error().ToString().c_str());
    return 1;
  }
  fs::path dir =
      fs::temp_directory_path() / ("patchlab-bench-libvirt-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto daemon = testing::PrivateLibvirtd::Start(dir / "daemon");
  if (!daemon) {
    std::fprintf(stderr, "libvirtd: %s\n", daemon.error().ToString().c_str());
    return 1;
  }
  LibvirtBackendOptions lo;
  lo.uri = (*daemon)->uri();
  lo.accelerator = Accelerator::kTcg;
  auto libvirt = LibvirtBackend::Open(lo);
  if (!libvirt) {
    std::fprintf(stderr, "%s\n", libvirt.error().ToString().c_str());
    return 1;
  }
  QemuBackendOptions qo;
  qo.accelerator = Accelerator::kTcg;
  QemuBackend qemu(qo);

  // One saved ready state per backend, made outside the timed rounds.
  std::unique_ptr<Vm> vm;
  Time([&] { return qemu.Boot(*image, Spec(dir, "q-save")); }, &vm);
  auto q_state = qemu.SaveReady(*vm, dir / "qemu.state");
  vm.reset();
  Time([&] { return (*libvirt)->Boot(*image, Spec(dir, "l-save")); }, &vm);
  auto l_state = (*libvirt)->SaveReady(*vm, dir / "libvirt.state");
  vm.reset();
  if (!q_state || !l_state) {
    std::fprintf(stderr, "saving: %s\n",
                 (!q_state ? q_state.error() : l_state.error()).ToString().c_str());
    return 1;
  }

  std::vector<double> q_boot, l_boot, q_restore, l_restore;
  for (int r = 0; r < rounds; ++r) {
    std::string n = std::to_string(r);
    q_boot.push_back(Time([&] { return qemu.Boot(*image, Spec(dir, "qb" + n)); }, &vm));
    vm.reset();
    l_boot.push_back(Time([&] { return (*libvirt)->Boot(*image, Spec(dir, "lb" + n)); }, &vm));
    vm.reset();
    q_restore.push_back(
        Time([&] { return qemu.RestoreReady(*q_state, Spec(dir, "qr" + n)); }, &vm));
    vm.reset();
    l_restore.push_back(
        Time([&] { return (*libvirt)->RestoreReady(*l_state, Spec(dir, "lr" + n)); }, &vm));
    vm.reset();
    std::fprintf(stderr, "round %d: boot qemu %.3f libvirt %.3f; restore qemu %.3f libvirt %.3f\n",
                 r, q_boot.back(), l_boot.back(), q_restore.back(), l_restore.back());
  }
  double qb = Median(q_boot), lb = Median(l_boot), qr = Median(q_restore), lr = Median(l_restore);
  std::printf("image %s, TCG, %d rounds, medians (s) from the call to an agent hello:\n",
              image->name.c_str(), rounds);
  std::printf("  BM_Boot_Qemu        %.3f\n  BM_Boot_Libvirt     %.3f   ratio libvirt/qemu %.2f\n",
              qb, lb, lb / qb);
  std::printf("  BM_Restore_Qemu     %.3f\n  BM_Restore_Libvirt  %.3f   ratio libvirt/qemu %.2f\n",
              qr, lr, lr / qr);
  libvirt->reset();
  daemon->reset();
  fs::remove_all(dir);
  return 0;
}

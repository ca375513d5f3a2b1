#include "tests/libvirt/test_image.h"

#include <fmt/format.h>

#include <cstdio>
#include <optional>

#include "base/file_util.h"
#include "base/subprocess.h"
#include "harness/vm/image_store.h"
#include "harness/vm/internal/cpio_writer.h"
#include "harness/vm/internal/debug_strip.h"

namespace patchlab::testing {

namespace fs = std::filesystem;
using harness::DefaultCacheDir;
using harness::ImageStore;
using harness::ImageStoreOptions;
using harness::VmImage;

namespace {

// A minimal image of the same shape when the image store cannot build one:
// the Debian cloud kernel, busybox-static and the lab's agent on ttyS1, cached
// under CACHE/libvirt-test/.
Result<VmImage> MinimalImage(const fs::path& agent_binary) {
  fs::path dir = DefaultCacheDir() / "libvirt-test";
  fs::path kernel_dir = dir / "kernel";
  if (auto s = MakeDirs(dir); !s) return std::unexpected(s.error());
  std::error_code ec;
  fs::path vmlinuz;
  auto find_kernel = [&] {
    if (!fs::exists(kernel_dir / "boot")) return;
    for (const auto& e : fs::directory_iterator(kernel_dir / "boot", ec)) {
      if (e.path().filename().string().rfind("vmlinuz-", 0) == 0) vmlinuz = e.path();
    }
  };
  find_kernel();
  if (vmlinuz.empty()) {
    SubprocessOptions get;
    get.argv = {"sh", "-c",
                "set -e; cd '" + dir.string() +
                    "'; p=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: "
                    "linux-image/{print $2; exit}');"
                    " apt-get download \"$p\"; dpkg -x \"$p\"_*.deb kernel; rm -f \"$p\"_*.deb"};
    get.timeout = std::chrono::minutes(5);
    auto r = RunSubprocess(std::move(get));
    if (!r) return std::unexpected(r.error());
    if (!r->status.Success())
      return Fail(ErrorCode::kNotFound, "fetching the cloud kernel: {}", r->stderr_data);
    find_kernel();
    if (vmlinuz.empty())
      return Fail(ErrorCode::kNotFound, "no vmlinuz in the cloud kernel package");
  }
  auto busybox = ReadFile("/bin/busybox");
  if (!busybox) return std::unexpected(busybox.error());
  // Without debug info, as ImageStore carries it: a third of the bytes to unpack and save.
  auto agent = harness::internal::ReadWithoutDebugInfo(agent_binary);
  if (!agent) return std::unexpected(agent.error());
  harness::internal::CpioWriter cpio;
  for (const char* d : {"/proc", "/sys", "/dev", "/tmp", "/run", "/bin", "/sbin", "/usr/sbin"})
    cpio.AddDirectory(d);
  cpio.AddCharDevice("/dev/console", 0600, 5, 1);
  cpio.AddFile("/bin/busybox", 0755, *busybox);
  cpio.AddSymlink("/bin/sh", "/bin/busybox");
  cpio.AddFile("/usr/sbin/patchlab-agent", 0755, *agent);
  // The ISA panic device needs its driver, a module in the cloud kernel.
  std::string modules;
  fs::path pvpanic_dir = kernel_dir / "lib/modules" / vmlinuz.filename().string().substr(8) /
                         "kernel/drivers/misc/pvpanic";
  for (const char* m : {"pvpanic.ko", "pvpanic-mmio.ko"}) {
    auto data = ReadFile(pvpanic_dir / m);
    if (!data) return std::unexpected(data.error());
    cpio.AddFile(std::string("/lib/") + m, 0644, *data);
    modules += std::string("insmod /lib/") + m + "\n";
  }
  cpio.AddFile("/init", 0755,
               "#!/bin/busybox sh\n/bin/busybox --install -s /bin\nmount -t proc proc /proc\n"
               "mount -t sysfs sysfs /sys\nmount -t devtmpfs devtmpfs /dev\nmkdir -p /run/out\n" +
                   modules + "exec /usr/sbin/patchlab-agent --device /dev/ttyS1\n");
  std::string initrd_data = cpio.Finish();
  fs::path initrd = dir / (Sha256Hex(initrd_data).substr(0, 16) + ".cpio");
  if (!fs::exists(initrd)) {
    if (auto s = WriteFileAtomic(initrd, initrd_data); !s) return std::unexpected(s.error());
  }
  std::string release = vmlinuz.filename().string().substr(8);
  return VmImage{
      "libvirt-test-minimal",
      release,
      vmlinuz,
      initrd,
      {"console=ttyS0,115200", "loglevel=7", "print-fatal-signals=1", "panic=-1", "init_on_free=1"},
      {"qemu64"},
      Sha256Hex(initrd_data + release)};
}

}  // namespace

// The lab's reference image, built (or found in the cache) once per process;
// the minimal one when the image store cannot build it here.
Result<VmImage> LabImage(const fs::path& source_dir, const fs::path& agent_binary) {
  static std::optional<Result<VmImage>> image;
  if (!image) {
    ImageStoreOptions o;
    o.recipes = source_dir / "vm-images/images.yaml";
    o.cache_dir = DefaultCacheDir();
    o.agent_binary = agent_binary;
    auto store = ImageStore::Open(o);
    Result<VmImage> built =
        store ? store->Build("debian12-cloud") : Result<VmImage>(std::unexpected(store.error()));
    if (!built) {
      std::fprintf(stderr, "image store: %s; using a minimal image\n",
                   built.error().ToString().c_str());
      built = MinimalImage(agent_binary);
    }
    image = std::move(built);
  }
  return *image;
}

}  // namespace patchlab::testing

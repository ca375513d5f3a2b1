#include "harness/vm/internal/initramfs.h"

#include <algorithm>

#include "base/file_util.h"
#include "base/subprocess.h"
#include "harness/vm/internal/cpio_writer.h"
#include "harness/vm/internal/disk_root.h"
#include "harness/vm/internal/image_files.h"
#include "harness/vm/internal/ldd_closure.h"

namespace patchlab::harness::internal {
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kInitScript = R"(#!/bin/busybox sh
# patchlab reference image: mount the basics and hand over to the guest agent.
export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm /run/out
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/out
# pvpanic lets QEMU see a kernel panic (GUEST_PANICKED); Debian builds it as a module.
for m in /lib/modules/pvpanic.ko /lib/modules/pvpanic-mmio.ko; do
  [ -f "$m" ] && insmod "$m"
done
echo "patchlab-init: starting the agent on /dev/ttyS1"
exec /usr/sbin/patchlab-agent --device /dev/ttyS1
)";

// For the bare-boot baseline and the KVM probe: reach init, say so, power off.
// ({0}: the image's busybox.)
constexpr std::string_view kBareInitScript = R"(#!{0} sh
echo "patchlab-bare: init reached"
{0} poweroff -f
)";

// /init of a Debian-system image: busybox for the few commands init needs
// (Debian's essential set has no mount), the loopback up (services listen on
// it and the load generators reach them there), then the agent as PID 1: no
// init system, so nothing but the scenario's own processes runs.
constexpr std::string_view kSystemInitScript = R"(#!/usr/lib/patchlab/busybox sh
# patchlab reference image (a Debian system): mount the basics, hand over to the agent.
bb=/usr/lib/patchlab/busybox
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb mount -t devtmpfs devtmpfs /dev 2>/dev/null
$bb mkdir -p /dev/pts /dev/shm
$bb mount -t devpts devpts /dev/pts
$bb mount -t tmpfs -o mode=1777 tmpfs /dev/shm
$bb mount -t tmpfs -o mode=1777 tmpfs /tmp
$bb mount -t tmpfs -o mode=0755 tmpfs /run
$bb mkdir -p /run/out /run/lock
$bb hostname patchlab
$bb ip link set lo up
for m in /usr/lib/patchlab/pvpanic.ko /usr/lib/patchlab/pvpanic-mmio.ko; do
  [ -f "$m" ] && $bb insmod "$m"
done
echo "patchlab-init: starting the agent on /dev/ttyS1"
exec /usr/sbin/patchlab-agent --device /dev/ttyS1
)";

// /init of a Debian system on a read-only disk (`root: disk`): load the
// modules that reach the disk (virtio, ext4, overlay: Debian builds them as
// modules), mount it under an overlay on tmpfs (writes stay in the guest's
// memory, so a saved ready state holds them), unpack the lab's own files over
// it and hand over to the system's /init (kSystemInitScript).
constexpr std::string_view kDiskInitScript = R"(#!/bin/busybox sh
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb mount -t devtmpfs devtmpfs /dev
for m in $($bb cat /modules/order); do
  $bb insmod /modules/$m || echo "patchlab-init: insmod $m failed"
done
n=0
while [ ! -b /dev/vda ]; do
  n=$((n+1))
  if [ $n -gt 1000 ]; then echo "patchlab-init: no root disk /dev/vda"; $bb poweroff -f; fi
  $bb usleep 10000
done
$bb mkdir -p /lower /upper /newroot
$bb mount -t ext4 -o ro /dev/vda /lower || { echo "patchlab-init: cannot mount /dev/vda"; $bb poweroff -f; }
$bb mount -t tmpfs -o mode=0755 tmpfs /upper
$bb mkdir -p /upper/data /upper/work
$bb mount -t overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work overlay /newroot
cd /newroot && $bb cpio -i -d -m -u < /lab.cpio 2>/dev/null
cd /
$bb umount /proc /sys /dev
exec $bb switch_root /newroot /init
)";

// What the disk initramfs loads, dependencies resolved from the kernel package.
const std::vector<std::string> kDiskModules = {"virtio_pci", "virtio_blk", "ext4", "overlay"};

constexpr std::string_view kHosts = "127.0.0.1 localhost\n::1 localhost\n";

constexpr std::string_view kPasswd = "root:x:0:0:root:/root:/bin/sh\n";
constexpr std::string_view kGroup = "root:x:0:\n";

// Where the lab's own files go: in the busybox userland they are the system;
// in a Debian system they keep out of Debian's paths.
struct Layout {
  std::string busybox;      // the shell /init runs under
  std::string modules_dir;  // the pvpanic modules
  bool usr_merged = false;
};
const Layout kBusyboxLayout{"/bin/busybox", "/lib/modules", false};
const Layout kSystemLayout{"/usr/lib/patchlab/busybox", "/usr/lib/patchlab", true};

// The busybox userland: busybox, its applet links, a root-only passwd.
Status AddBusyboxRoot(CpioWriter& cpio, const ImageStoreOptions& options) {
  for (const char* dir :
       {"/proc", "/sys", "/dev", "/tmp", "/run", "/root", "/etc", "/usr/bin", "/usr/sbin"}) {
    cpio.AddDirectory(dir);
  }
  // The kernel opens /dev/console for init's stdio before anything is mounted.
  cpio.AddCharDevice("/dev/console", 0600, 5, 1);
  cpio.AddCharDevice("/dev/null", 0666, 1, 3);
  cpio.AddFile("/etc/passwd", 0644, kPasswd);
  cpio.AddFile("/etc/group", 0644, kGroup);
  auto busybox = ReadFile(options.busybox);
  if (!busybox) return std::unexpected(busybox.error());
  cpio.AddFile("/bin/busybox", 0755, *busybox);
  // Applet links made now rather than by `busybox --install` at boot: every
  // instruction before the agent is ready costs boot time under TCG.
  SubprocessOptions list;
  list.argv = {options.busybox.string(), "--list-full"};
  auto applets = RunSubprocess(std::move(list));
  if (!applets) return std::unexpected(applets.error());
  std::vector<std::string> names;
  for (size_t start = 0; start < applets->stdout_data.size();) {
    size_t nl = applets->stdout_data.find('\n', start);
    if (nl == std::string::npos) nl = applets->stdout_data.size();
    std::string applet = applets->stdout_data.substr(start, nl - start);
    if (!applet.empty() && applet != "bin/busybox") names.push_back(applet);
    start = nl + 1;
  }
  std::sort(names.begin(), names.end());
  for (const auto& n : names) cpio.AddSymlink(n, "/bin/busybox");
  cpio.AddFile("/init", 0755, kInitScript);
  return {};
}

// A Debian system as the root, with busybox beside it (not over Debian's
// tools) for /init, and a loopback-only /etc/hosts when it has none.
Status AddSystemRoot(CpioWriter& cpio, const ImageStoreOptions& options, const fs::path& root) {
  if (auto s = AddTree(cpio, root, {.skip_docs = true, .keep_owners = true, .skip_dev = true}); !s)
    return s;
  for (const char* dir : {"/proc", "/sys", "/dev", "/tmp", "/run"}) cpio.AddDirectory(dir);
  cpio.AddCharDevice("/dev/console", 0600, 5, 1);
  cpio.AddCharDevice("/dev/null", 0666, 1, 3);
  if (!fs::exists(root / "etc/hosts")) cpio.AddFile("/etc/hosts", 0644, kHosts);
  auto busybox = ReadFile(options.busybox);
  if (!busybox) return std::unexpected(busybox.error());
  cpio.AddFile(kSystemLayout.busybox, 0755, *busybox);
  cpio.AddFile("/init", 0755, kSystemInitScript);
  return {};
}

// The panic notifier's modules, if the kernel has them as modules.
Status AddPanicModules(CpioWriter& cpio, const fs::path& kernel_root, const Layout& layout) {
  std::error_code ec;
  fs::path modules = kernel_root / "lib/modules";
  if (!fs::is_directory(modules, ec)) return {};
  for (const auto& release : fs::directory_iterator(modules, ec)) {
    for (const char* name : {"pvpanic.ko", "pvpanic-mmio.ko"}) {
      fs::path ko = release.path() / "kernel/drivers/misc/pvpanic" / name;
      if (!fs::exists(ko)) continue;
      auto data = ReadFile(ko);
      if (!data) return std::unexpected(data.error());
      cpio.AddFile(layout.modules_dir + "/" + name, 0644, *data);
    }
  }
  return {};
}

// The lab's own files: the agent, hotpatch, the recipe's libraries and packages.
Status AddLabFiles(CpioWriter& cpio, const ImageStoreOptions& options, const ImageRecipe& recipe,
                   const ImageIngredients& ingredients, const Layout& layout) {
  cpio.AddFile("/bare-init", 0755, fmt::format(fmt::runtime(kBareInitScript), layout.busybox));
  if (auto s =
          AddLabBinary(cpio, options.agent_binary, "/usr/sbin/patchlab-agent", layout.usr_merged);
      !s)
    return s;
  if (!options.hotpatch_binary.empty() && fs::is_regular_file(options.hotpatch_binary)) {
    if (auto s =
            AddLabBinary(cpio, options.hotpatch_binary, "/usr/bin/hotpatch", layout.usr_merged);
        !s) {
      return std::unexpected(std::move(s.error()).AddContext("adding hotpatch"));
    }
  }
  for (const std::string& lib : recipe.libraries) {
    auto host = internal::FindHostLibrary(lib);
    if (!host)
      return std::unexpected(
          std::move(host.error())
              .AddContext(fmt::format("image {} ({})", recipe.name, recipe.where)));
    std::string guest = fs::path(lib).is_absolute() ? lib : host->string();
    if (auto s = AddHostFile(cpio, fs::canonical(*host), guest, 0755, true, layout.usr_merged); !s)
      return s;
  }
  if (auto s = AddPanicModules(cpio, ingredients.kernel_root, layout); !s) return s;
  for (const fs::path& root : ingredients.package_roots) {
    if (auto s = AddTree(cpio, root, {}); !s) return s;
  }
  return {};
}

}  // namespace

// The initramfs of a recipe: deterministic bytes for the same inputs.
Result<std::string> BuildInitramfs(const ImageStoreOptions& options, const ImageRecipe& recipe,
                                   const ImageIngredients& ingredients,
                                   const std::vector<ImageFile>& extra) {
  CpioWriter cpio;
  const Layout& layout = recipe.system ? kSystemLayout : kBusyboxLayout;
  Status root = recipe.system ? AddSystemRoot(cpio, options, ingredients.system_root)
                              : AddBusyboxRoot(cpio, options);
  if (!root) return std::unexpected(root.error());
  if (auto s = AddLabFiles(cpio, options, recipe, ingredients, layout); !s)
    return std::unexpected(s.error());
  for (const ImageFile& f : extra) {
    if (!fs::exists(f.host_path))
      return Fail(ErrorCode::kNotFound, "extra image file {} does not exist", f.host_path.string());
    if (auto s = AddHostFile(cpio, f.host_path, f.guest_path, f.mode, f.with_libraries,
                             layout.usr_merged);
        !s)
      return std::unexpected(s.error());
  }
  return cpio.Finish();
}

// A Debian system on a disk (`root: disk`): the lab's files, /init and
// busybox as an inner cpio the disk initramfs unpacks over the overlay, and
// that initramfs itself: busybox, the disk /init and the modules.
Result<std::string> BuildDiskInitramfs(const ImageStoreOptions& options, const ImageRecipe& recipe,
                                       const ImageIngredients& ingredients,
                                       const std::vector<ImageFile>& extra) {
  CpioWriter lab;
  if (!fs::exists(ingredients.system_root / "etc/hosts")) lab.AddFile("/etc/hosts", 0644, kHosts);
  auto busybox = ReadFile(options.busybox);
  if (!busybox) return std::unexpected(busybox.error());
  lab.AddFile(kSystemLayout.busybox, 0755, *busybox);
  lab.AddFile("/init", 0755, kSystemInitScript);
  if (auto s = AddLabFiles(lab, options, recipe, ingredients, kSystemLayout); !s)
    return std::unexpected(s.error());
  for (const ImageFile& f : extra) {
    if (!fs::exists(f.host_path))
      return Fail(ErrorCode::kNotFound, "extra image file {} does not exist", f.host_path.string());
    if (auto s = AddHostFile(lab, f.host_path, f.guest_path, f.mode, f.with_libraries, true); !s)
      return std::unexpected(s.error());
  }
  auto modules = internal::BootModules(ingredients.kernel_root, kDiskModules);
  if (!modules) return std::unexpected(modules.error());

  CpioWriter cpio;
  for (const char* dir : {"/proc", "/sys", "/dev", "/bin", "/modules"}) cpio.AddDirectory(dir);
  cpio.AddCharDevice("/dev/console", 0600, 5, 1);
  cpio.AddCharDevice("/dev/null", 0666, 1, 3);
  cpio.AddFile("/bin/busybox", 0755, *busybox);
  cpio.AddFile("/init", 0755, kDiskInitScript);
  cpio.AddFile("/bare-init", 0755, fmt::format(fmt::runtime(kBareInitScript), "/bin/busybox"));
  std::string order;
  for (const internal::BootModule& m : *modules) {
    cpio.AddFile("/modules/" + m.name, 0644, m.bytes);
    order += m.name + "\n";
  }
  cpio.AddFile("/modules/order", 0644, order);
  cpio.AddFile("/lab.cpio", 0644, lab.Finish());
  return cpio.Finish();
}

}  // namespace patchlab::harness::internal

#include "harness/vm/image_store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>

#include "base/file_util.h"
#include "base/log.h"
#include "base/subprocess.h"
#include "base/yaml_util.h"
#include "harness/vm/internal/cpio_writer.h"
#include "harness/vm/internal/debian_packages.h"
#include "harness/vm/internal/debian_system.h"
#include "harness/vm/internal/debug_strip.h"
#include "harness/vm/internal/disk_root.h"
#include "harness/vm/internal/ldd_closure.h"

namespace patchlab::harness {
namespace fs = std::filesystem;
using internal::CpioWriter;

namespace {

// The lab's part of every kernel command line: the console on the first serial
// port, user-space crashes in the kernel log (FACTS: `quiet` hides them and
// abort() leaves no line without print-fatal-signals), and init_on_free, which
// shrinks the saved ready state by about 40%.
const std::vector<std::string> kBaseKernelArgs = {"console=ttyS0,115200",  "loglevel=7",
                                                  "print-fatal-signals=1", "panic=-1",
                                                  "init_on_free=1",        "rdinit=/init"};

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

// `system: {suite: bookworm, packages: [nginx-light, ...]}`.
Result<SystemRecipe> ParseSystem(const YamlMap& image) {
  auto m = image.Map("system");
  if (!m) return std::unexpected(m.error());
  if (auto s = m->AllowOnly({"suite", "packages", "root"}); !s) return std::unexpected(s.error());
  SystemRecipe system;
  auto root = m->GetOr<std::string>("root", "initramfs");
  if (!root) return std::unexpected(root.error());
  if (*root != "initramfs" && *root != "disk")
    return std::unexpected(m->ErrorAt("root", "must be initramfs or disk"));
  system.root = *root == "disk" ? SystemRoot::kDisk : SystemRoot::kInitramfs;
  auto suite = m->GetOr<std::string>("suite", "bookworm");
  if (!suite) return std::unexpected(suite.error());
  if (suite->empty() ||
      suite->find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") != std::string::npos) {
    return std::unexpected(m->ErrorAt("suite", "must be a Debian suite name such as bookworm"));
  }
  system.suite = *suite;
  if (m->Has("packages")) {
    auto packages = m->GetStrings("packages");
    if (!packages) return std::unexpected(packages.error());
    for (const std::string& p : *packages) {
      // A name goes onto mmdebstrap's command line: no options, no lists.
      if (p.empty() || p.front() == '-' || p.find_first_of(" ,\t\n") != std::string::npos) {
        return std::unexpected(
            m->ErrorAt("packages", fmt::format("'{}' is not a Debian package name", p)));
      }
    }
    system.packages = *packages;
  }
  return system;
}

Result<std::vector<ImageRecipe>> ParseRecipes(const std::string& file, const YAML::Node& root) {
  auto top = YamlMap::Of(file, root, "");
  if (!top) return std::unexpected(top.error());
  if (auto s = top->AllowOnly({"images"}); !s) return std::unexpected(s.error());
  YAML::Node list = top->Node("images");
  if (!list || !list.IsSequence() || list.size() == 0) {
    return std::unexpected(top->ErrorAt("images", "must be a non-empty list of image recipes"));
  }
  std::vector<ImageRecipe> recipes;
  for (size_t i = 0; i < list.size(); ++i) {
    auto m = YamlMap::Of(file, list[i], fmt::format("images[{}]", i));
    if (!m) return std::unexpected(m.error());
    if (auto s = m->AllowOnly({"name", "description", "kernel", "packages", "libraries", "cpus",
                               "kernel_args", "memory_mib", "system"});
        !s) {
      return std::unexpected(s.error());
    }
    ImageRecipe r;
    r.where = YamlWhere(file, list[i]);
    auto name = m->Get<std::string>("name");
    if (!name) return std::unexpected(name.error());
    r.name = *name;
    if (r.name.empty() ||
        r.name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-_.") != std::string::npos) {
      return std::unexpected(
          m->ErrorAt("name", "must be lowercase letters, digits, '-', '_' or '.'"));
    }
    for (const auto& other : recipes) {
      if (other.name == r.name) {
        return std::unexpected(
            m->ErrorAt("name", fmt::format("'{}' is already defined at {}", r.name, other.where)));
      }
    }
    auto kernel = m->Get<std::string>("kernel");
    if (!kernel) return std::unexpected(kernel.error());
    r.kernel_package = *kernel;
    auto desc = m->GetOr<std::string>("description", "");
    if (!desc) return std::unexpected(desc.error());
    r.description = *desc;
    for (auto [key, out] :
         {std::pair{"packages", &r.packages}, std::pair{"libraries", &r.libraries},
          std::pair{"cpus", &r.cpus}, std::pair{"kernel_args", &r.kernel_args}}) {
      if (!m->Has(key)) continue;
      auto v = m->GetStrings(key);
      if (!v) return std::unexpected(v.error());
      *out = *v;
    }
    if (r.cpus.empty()) r.cpus = {"qemu64"};
    auto mem = m->GetOr<int>("memory_mib", 512);
    if (!mem) return std::unexpected(mem.error());
    if (*mem < 64 || *mem > 65536)
      return std::unexpected(m->ErrorAt("memory_mib", "must be between 64 and 65536"));
    r.memory_mib = *mem;
    if (m->Has("system")) {
      auto system = ParseSystem(*m);
      if (!system) return std::unexpected(system.error());
      r.system = std::move(*system);
    }
    recipes.push_back(std::move(r));
  }
  return recipes;
}

// Where a host path lands in a Debian system whose /lib, /bin and /sbin are
// links into /usr (merged /usr): written through the link, the kernel's cpio
// unpacker would follow it, but the archive would name two entries for one file.
std::string GuestPath(const std::string& path, bool usr_merged) {
  if (!usr_merged) return path;
  for (const char* top : {"/lib/", "/lib64/", "/bin/", "/sbin/"}) {
    if (path.rfind(top, 0) == 0) return "/usr" + path;
  }
  return path;
}

// Adds `host`'s ldd closure at the paths ld.so asks for. In a Debian system
// (`usr_merged`) a library it already has is kept: it is the same Debian file
// the host has. With `strip_debug` a library with debug info goes in without it.
Status AddClosure(CpioWriter& cpio, const fs::path& host, bool usr_merged, bool strip_debug) {
  auto libs = internal::LddClosure(host);
  if (!libs) return std::unexpected(libs.error());
  for (const std::string& lib : *libs) {
    std::string guest = GuestPath(lib, usr_merged);
    if (cpio.Contains(guest)) continue;
    // Follow symlinks: the guest gets the real bytes under the name ld.so asks for.
    fs::path real = fs::canonical(lib);
    auto bytes = strip_debug ? internal::ReadWithoutDebugInfo(real) : ReadFile(real);
    if (!bytes) return std::unexpected(bytes.error());
    cpio.AddFile(guest, 0755, *bytes);
  }
  return {};
}

// Adds a host file at `guest_path` as it is, and with `closure` its ldd closure.
Status AddHostFile(CpioWriter& cpio, const fs::path& host, const std::string& guest_path,
                   mode_t mode, bool closure, bool usr_merged = false) {
  auto data = ReadFile(host);
  if (!data) return std::unexpected(data.error());
  cpio.AddFile(GuestPath(guest_path, usr_merged), mode, *data);
  if (!closure) return {};
  return AddClosure(cpio, host, usr_merged, false);
}

// Adds one of the lab's own programs (the agent, hotpatch) and its closure
// without debug info: the guest runs them, nobody debugs them there, and an
// -O2 -g hotpatch is 25 times its stripped size.
Status AddLabBinary(CpioWriter& cpio, const fs::path& host, const std::string& guest_path,
                    bool usr_merged) {
  auto data = internal::ReadWithoutDebugInfo(host);
  if (!data) return std::unexpected(data.error());
  cpio.AddFile(GuestPath(guest_path, usr_merged), 0755, *data);
  return AddClosure(cpio, host, usr_merged, true);
}

struct TreeOptions {
  bool skip_docs = true;     // usr/share/{doc,man,lintian}
  bool keep_owners = false;  // a Debian system's files keep their packages' owners
  bool skip_dev = false;     // /dev is a devtmpfs at boot; the lab adds its own nodes
};

// Adds every directory, regular file and symlink under `root` (sorted, so the
// bytes are the same for the same tree).
Status AddTree(CpioWriter& cpio, const fs::path& root, TreeOptions tree) {
  std::vector<fs::path> entries;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    entries.push_back(it->path());
  }
  if (ec) return Fail(ErrorCode::kIo, "listing {}: {}", root.string(), ec.message());
  std::sort(entries.begin(), entries.end());  // determinism
  for (const fs::path& p : entries) {
    // Lexically: fs::relative would follow the links a Debian system is full of.
    std::string rel = p.lexically_relative(root).string();
    if (tree.skip_docs &&
        (rel.rfind("usr/share/doc", 0) == 0 || rel.rfind("usr/share/man", 0) == 0 ||
         rel.rfind("usr/share/lintian", 0) == 0)) {
      continue;
    }
    if (tree.skip_dev && rel.rfind("dev/", 0) == 0) continue;
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0)
      return Fail(ErrorCode::kIo, "lstat {}: {}", p.string(), std::strerror(errno));
    internal::CpioOwner owner;
    if (tree.keep_owners) owner = {st.st_uid, st.st_gid};
    if (S_ISLNK(st.st_mode)) {
      cpio.AddSymlink(rel, fs::read_symlink(p).string(), owner);
    } else if (S_ISDIR(st.st_mode)) {
      cpio.AddDirectory(rel, st.st_mode & 07777, owner);
    } else if (S_ISREG(st.st_mode)) {
      auto data = ReadFile(p);
      if (!data) return std::unexpected(data.error());
      cpio.AddFile(rel, st.st_mode & 07777, *data, owner);
    }
  }
  return {};
}

nlohmann::json ImageJson(const VmImage& image, const ImageRecipe& recipe,
                         const std::string& package) {
  return {{"name", image.name},
          {"kernel_package", package},
          {"kernel_release", image.kernel_release},
          {"kernel", image.kernel},
          {"initrd", image.initrd},
          {"root_disk", image.root_disk},
          {"kernel_args", image.kernel_args},
          {"cpus", image.cpus},
          {"content_hash", image.content_hash},
          {"memory_mib", recipe.memory_mib}};
}

}  // namespace

fs::path DefaultCacheDir() {
  if (const char* env = std::getenv("PATCHLAB_CACHE"); env != nullptr && *env != '\0') return env;
  return "/var/cache/patchlab";
}

LabBinaries LocateLabBinaries() {
  LabBinaries out;
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  // Walk up from the running program: in a build tree the agent sits in
  // BUILD/harness and hotpatch in BUILD/tools/hotpatch.
  for (fs::path dir = exe.parent_path(); !dir.empty() && dir != dir.root_path();
       dir = dir.parent_path()) {
    if (out.agent.empty() && fs::is_regular_file(dir / "harness/patchlab-agent"))
      out.agent = dir / "harness/patchlab-agent";
    if (out.agent.empty() && fs::is_regular_file(dir / "patchlab-agent"))
      out.agent = dir / "patchlab-agent";
    if (out.hotpatch.empty() && fs::is_regular_file(dir / "tools/hotpatch/hotpatch"))
      out.hotpatch = dir / "tools/hotpatch/hotpatch";
    if (out.hotpatch.empty() && fs::is_regular_file(dir / "hotpatch"))
      out.hotpatch = dir / "hotpatch";
  }
  const char* path_env = std::getenv("PATH");
  std::string path = path_env ? path_env : "/usr/bin:/bin";
  for (size_t start = 0; start <= path.size();) {
    size_t colon = path.find(':', start);
    fs::path dir =
        path.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    if (out.agent.empty() && fs::is_regular_file(dir / "patchlab-agent"))
      out.agent = dir / "patchlab-agent";
    if (out.hotpatch.empty() && fs::is_regular_file(dir / "hotpatch"))
      out.hotpatch = dir / "hotpatch";
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return out;
}

Result<std::vector<ImageRecipe>> LoadImageRecipes(const fs::path& yaml_path) {
  auto root = LoadYamlFile(yaml_path.string());
  if (!root) return std::unexpected(root.error());
  return ParseRecipes(yaml_path.string(), *root);
}

Result<std::vector<ImageRecipe>> ParseImageRecipes(const std::string& text,
                                                   const std::string& name) {
  auto root = LoadYamlString(text, name);
  if (!root) return std::unexpected(root.error());
  return ParseRecipes(name, *root);
}

Result<std::optional<fs::path>> SystemRootOf(const fs::path& recipes, const std::string& name,
                                             const fs::path& cache_dir) {
  auto all = LoadImageRecipes(recipes);
  if (!all) return std::unexpected(all.error());
  for (const ImageRecipe& r : *all) {
    if (r.name != name) continue;
    if (!r.system) return std::optional<fs::path>();
    internal::DebianSystemSpec spec{r.system->suite, r.system->packages, r.where};
    auto system = internal::BuildDebianSystem(spec, cache_dir);
    if (!system) return std::unexpected(system.error());
    return std::optional<fs::path>(system->root);
  }
  return Fail(ErrorCode::kNotFound, "no image named '{}' in {}", name, recipes.string());
}

Result<ImageStore> ImageStore::Open(ImageStoreOptions options) {
  if (options.cache_dir.empty()) options.cache_dir = DefaultCacheDir();
  if (options.agent_binary.empty() || !fs::exists(options.agent_binary)) {
    return Fail(ErrorCode::kNotFound,
                "guest agent binary '{}' not found (build the patchlab-agent target)",
                options.agent_binary.string());
  }
  if (!fs::exists(options.busybox)) {
    return Fail(ErrorCode::kNotFound, "{} not found (install busybox-static)",
                options.busybox.string());
  }
  auto recipes = LoadImageRecipes(options.recipes);
  if (!recipes) return std::unexpected(recipes.error());
  return ImageStore(std::move(options), std::move(*recipes));
}

Result<ImageRecipe> ImageStore::Recipe(const std::string& name) const {
  std::string names;
  for (const auto& r : recipes_) {
    if (r.name == name) return r;
    names += (names.empty() ? "" : ", ") + r.name;
  }
  return Fail(ErrorCode::kNotFound, "no image named '{}' in {} (it has: {})", name,
              options_.recipes.string(), names);
}

namespace {

struct Ingredients {
  internal::DebianPackage kernel_package;
  fs::path kernel_root;  // unpacked kernel package
  std::vector<fs::path> package_roots;
  fs::path system_root;  // a recipe with system: the Debian system made by mmdebstrap
};

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
                   const Ingredients& ingredients, const Layout& layout) {
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

// The initramfs of a recipe: deterministic bytes for the same inputs.
Result<std::string> BuildInitramfs(const ImageStoreOptions& options, const ImageRecipe& recipe,
                                   const Ingredients& ingredients,
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
                                       const Ingredients& ingredients,
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

}  // namespace

namespace {

Result<std::optional<VmImage>> BuildOrFind(const ImageStoreOptions& options,
                                           const ImageRecipe& recipe,
                                           const std::vector<ImageFile>& extra, bool fetch) {
  auto where = fmt::format("image {} ({})", recipe.name, recipe.where);
  Ingredients ing;
  auto pkg = internal::ResolvePackage(recipe.kernel_package, options.cache_dir);
  if (!pkg) return std::unexpected(std::move(pkg.error()).AddContext(where));
  ing.kernel_package = *pkg;
  fs::path debs = options.cache_dir / "debs";
  std::vector<internal::DebianPackage> all = {*pkg};
  for (const std::string& extra_pkg : recipe.packages) {
    auto p = internal::ResolvePackage(extra_pkg, options.cache_dir);
    if (!p) return std::unexpected(std::move(p.error()).AddContext(where));
    all.push_back(*p);
  }
  std::vector<fs::path> roots;
  for (const auto& p : all) {
    if (!fetch && !fs::exists(debs / p.filename)) return std::optional<VmImage>();
    auto deb = internal::FetchDeb(p, debs);
    if (!deb) return std::unexpected(std::move(deb.error()).AddContext(where));
    fs::path root = options.cache_dir / "packages" / fs::path(p.filename).stem();
    if (auto s = internal::ExtractDeb(*deb, root); !s)
      return std::unexpected(std::move(s.error()).AddContext(where));
    roots.push_back(root);
  }
  ing.kernel_root = roots.front();
  ing.package_roots.assign(roots.begin() + 1, roots.end());
  if (recipe.system) {
    internal::DebianSystemSpec spec{recipe.system->suite, recipe.system->packages, recipe.where};
    auto system = fetch ? internal::BuildDebianSystem(spec, options.cache_dir)
                        : internal::CachedDebianSystem(spec, options.cache_dir);
    if (!system && !fetch && system.error().code() == ErrorCode::kNotFound)
      return std::optional<VmImage>();
    if (!system) return std::unexpected(std::move(system.error()).AddContext(where));
    ing.system_root = system->root;
  }

  VmImage image;
  image.name = recipe.name;
  for (const auto& e : fs::directory_iterator(ing.kernel_root / "boot")) {
    std::string f = e.path().filename().string();
    if (f.rfind("vmlinuz-", 0) == 0) {
      image.kernel = e.path();
      image.kernel_release = f.substr(8);
    }
  }
  if (image.kernel.empty()) {
    return Fail(ErrorCode::kNotFound,
                "{}: package {} has no boot/vmlinuz-*: not a kernel image package", where,
                pkg->name);
  }
  image.kernel_args = kBaseKernelArgs;
  image.kernel_args.insert(image.kernel_args.end(), recipe.kernel_args.begin(),
                           recipe.kernel_args.end());
  image.cpus = recipe.cpus;

  bool on_disk = recipe.system && recipe.system->root == SystemRoot::kDisk;
  if (on_disk) {
    fs::path disk = ing.system_root.parent_path() / "root.ext4";
    if (!fetch && !fs::exists(disk)) return std::optional<VmImage>();
    auto made = internal::MakeRootDisk(ing.system_root);
    if (!made) return std::unexpected(std::move(made.error()).AddContext(where));
    image.root_disk = *made;
  }
  auto initramfs = on_disk ? BuildDiskInitramfs(options, recipe, ing, extra)
                           : BuildInitramfs(options, recipe, ing, extra);
  if (!initramfs) return std::unexpected(std::move(initramfs.error()).AddContext(where));
  std::string key = pkg->filename + "\n";
  // The disk is made once per Debian system (its folder names the system).
  if (on_disk) key += image.root_disk.string() + "\n";
  for (const auto& a : image.kernel_args) key += a + " ";
  key += "\n" + Sha256Hex(*initramfs);
  image.content_hash = Sha256Hex(key);
  fs::path dir = options.cache_dir / "images" /
                 fmt::format("{}-{}", recipe.name, image.content_hash.substr(0, 16));
  image.initrd = dir / "initrd.cpio";
  if (fs::exists(dir / "image.json") && fs::exists(image.initrd))
    return std::optional<VmImage>(image);
  if (!fetch) return std::optional<VmImage>();

  Log("harness")->info("building image {} ({} kernel {}, initramfs {} KiB)", recipe.name, pkg->name,
                       pkg->version, initramfs->size() / 1024);
  fs::path tmp = dir.string() + fmt::format(".tmp-{}", ::getpid());
  std::error_code ec;
  fs::remove_all(tmp, ec);
  if (auto s = MakeDirs(tmp); !s) return std::unexpected(s.error());
  VmImage staged = image;
  staged.initrd = image.initrd;  // the final path goes into image.json
  if (auto s = WriteFileAtomic(tmp / "initrd.cpio", *initramfs); !s)
    return std::unexpected(s.error());
  if (auto s =
          WriteFileAtomic(tmp / "image.json", ImageJson(staged, recipe, pkg->name).dump(2) + "\n");
      !s) {
    return std::unexpected(s.error());
  }
  fs::rename(tmp, dir, ec);
  if (ec) {
    fs::remove_all(tmp, ec);  // a concurrent build got there first with the same content
    if (!fs::exists(image.initrd))
      return Fail(ErrorCode::kIo, "{}: cannot move the image into {}", where, dir.string());
  }
  return std::optional<VmImage>(image);
}

}  // namespace

Result<VmImage> ImageStore::Build(const std::string& name, const std::vector<ImageFile>& extra) {
  auto recipe = Recipe(name);
  if (!recipe) return std::unexpected(recipe.error());
  auto image = BuildOrFind(options_, *recipe, extra, true);
  if (!image) return std::unexpected(image.error());
  return **image;
}

Result<std::optional<VmImage>> ImageStore::Cached(const std::string& name) {
  auto recipe = Recipe(name);
  if (!recipe) return std::unexpected(recipe.error());
  return BuildOrFind(options_, *recipe, {}, false);
}

Result<fs::path> ImageStore::MakeOverlay(const std::vector<ImageFile>& files) {
  CpioWriter cpio;
  for (const ImageFile& f : files) {
    if (!fs::exists(f.host_path))
      return Fail(ErrorCode::kNotFound, "overlay file {} does not exist", f.host_path.string());
    if (auto s = AddHostFile(cpio, f.host_path, f.guest_path, f.mode, f.with_libraries); !s)
      return std::unexpected(s.error());
  }
  std::string data = cpio.Finish();
  fs::path path = options_.cache_dir / "overlays" / (Sha256Hex(data).substr(0, 24) + ".cpio");
  if (fs::exists(path)) return path;
  if (auto s = MakeDirs(path.parent_path()); !s) return std::unexpected(s.error());
  if (auto s = WriteFileAtomic(path, data); !s) return std::unexpected(s.error());
  return path;
}

Result<VmImage> ImageStore::ComposeInitrd(const VmImage& base, const fs::path& overlay) {
  auto base_bytes = ReadFile(base.initrd);
  if (!base_bytes) return std::unexpected(base_bytes.error());
  auto overlay_bytes = ReadFile(overlay);
  if (!overlay_bytes) return std::unexpected(overlay_bytes.error());
  VmImage out = base;
  out.content_hash = Sha256Hex(base.content_hash + Sha256Hex(*overlay_bytes));
  out.initrd = options_.cache_dir / "composed" / (out.content_hash.substr(0, 24) + ".cpio");
  if (fs::exists(out.initrd)) return out;
  if (auto s = MakeDirs(out.initrd.parent_path()); !s) return std::unexpected(s.error());
  // Linux unpacks concatenated archives in order; later files replace earlier ones.
  if (auto s = WriteFileAtomic(out.initrd, *base_bytes + *overlay_bytes); !s)
    return std::unexpected(s.error());
  return out;
}

}  // namespace patchlab::harness

#include "harness/vm/image_store.h"

#include <unistd.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "base/file_util.h"
#include "base/log.h"
#include "harness/vm/internal/cpio_writer.h"
#include "harness/vm/internal/debian_packages.h"
#include "harness/vm/internal/debian_system.h"
#include "harness/vm/internal/disk_root.h"
#include "harness/vm/internal/image_files.h"
#include "harness/vm/internal/initramfs.h"

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

// The recipe's kernel package, extra packages and Debian system, fetched and
// unpacked (or with !fetch only found in the cache: nullopt when one is not
// there yet). Errors name the image as `where`.
Result<std::optional<internal::ImageIngredients>> GatherIngredients(
    const ImageStoreOptions& options, const ImageRecipe& recipe, const std::string& where,
    bool fetch) {
  using Found = std::optional<internal::ImageIngredients>;
  internal::ImageIngredients ing;
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
    if (!fetch && !fs::exists(debs / p.filename)) return Found();
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
    if (!system && !fetch && system.error().code() == ErrorCode::kNotFound) return Found();
    if (!system) return std::unexpected(std::move(system.error()).AddContext(where));
    ing.system_root = system->root;
  }
  return Found(std::move(ing));
}

Result<std::optional<VmImage>> BuildOrFind(const ImageStoreOptions& options,
                                           const ImageRecipe& recipe,
                                           const std::vector<ImageFile>& extra, bool fetch) {
  auto where = fmt::format("image {} ({})", recipe.name, recipe.where);
  auto gathered = GatherIngredients(options, recipe, where, fetch);
  if (!gathered) return std::unexpected(gathered.error());
  if (!*gathered) return std::optional<VmImage>();
  const internal::ImageIngredients& ing = **gathered;
  const internal::DebianPackage* pkg = &ing.kernel_package;

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
  auto initramfs = on_disk ? internal::BuildDiskInitramfs(options, recipe, ing, extra)
                           : internal::BuildInitramfs(options, recipe, ing, extra);
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

fs::path DefaultCacheDir() {
  if (const char* env = std::getenv("PATCHLAB_CACHE"); env != nullptr && *env != '\0') return env;
  return "/var/cache/patchlab";
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
    if (auto s = internal::AddHostFile(cpio, f.host_path, f.guest_path, f.mode, f.with_libraries);
        !s)
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

// patchlab images: build and list the reference VM images (vm-images/images.yaml).
//
//   patchlab images list  [--recipes FILE] [--cache DIR] [--json]
//   patchlab images build [NAME...] [--recipes FILE] [--cache DIR] [--agent FILE] [--hotpatch FILE]
//   [--json]
//
// Exit codes: 0 success; 1 a build failed (a package could not be fetched...);
// 2 usage error or a bad recipe file.
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "harness/vm/image_store.h"
#include "tools/patchlab/commands.h"

namespace patchlab::cli {
namespace {

namespace fs = std::filesystem;

struct ImagesFlags {
  std::string recipes;
  std::string cache;
  std::string agent;
  std::string hotpatch;
  bool json = false;
  std::vector<std::string> names;
};

// vm-images/images.yaml in the current folder, else in the nearest parent of this
// program's folder that has one (the source tree a build folder sits in).
std::string DefaultRecipes() {
  fs::path in_cwd = "vm-images/images.yaml";
  if (fs::exists(in_cwd)) return in_cwd.string();
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  for (fs::path dir = exe.parent_path(); !dir.empty() && dir != dir.root_path();
       dir = dir.parent_path()) {
    if (fs::exists(dir / in_cwd)) return (dir / in_cwd).string();
  }
  return in_cwd.string();
}

Result<harness::ImageStore> OpenStore(const ImagesFlags& f) {
  harness::LabBinaries found = harness::LocateLabBinaries();
  harness::ImageStoreOptions o;
  o.recipes = f.recipes.empty() ? DefaultRecipes() : f.recipes;
  o.cache_dir = f.cache.empty() ? harness::DefaultCacheDir() : fs::path(f.cache);
  o.agent_binary = f.agent.empty() ? found.agent : fs::path(f.agent);
  o.hotpatch_binary = f.hotpatch.empty() ? found.hotpatch : fs::path(f.hotpatch);
  return harness::ImageStore::Open(std::move(o));
}

int ExitFor(const Error& e) {
  return e.code() == ErrorCode::kParse || e.code() == ErrorCode::kInvalidArgument ? 2 : 1;
}

nlohmann::json ImageJson(const harness::VmImage& image) {
  return {{"name", image.name},     {"kernel_release", image.kernel_release},
          {"kernel", image.kernel}, {"initrd", image.initrd},
          {"cpus", image.cpus},     {"content_hash", image.content_hash}};
}

int RunList(const ImagesFlags& f) {
  auto store = OpenStore(f);
  if (!store) {
    std::fprintf(stderr, "patchlab images list: %s\n", store.error().ToString().c_str());
    return ExitFor(store.error());
  }
  nlohmann::json out = nlohmann::json::array();
  for (const auto& r : store->recipes()) {
    auto cached = store->Cached(r.name);
    nlohmann::json j = {{"name", r.name},
                        {"description", r.description},
                        {"kernel_package", r.kernel_package},
                        {"cpus", r.cpus},
                        {"built", cached && cached->has_value()}};
    if (cached && cached->has_value()) j["image"] = ImageJson(**cached);
    if (!cached) j["error"] = cached.error().ToString();
    out.push_back(j);
    if (!f.json) {
      std::printf("%-20s %-26s %-8s %s\n", r.name.c_str(), r.kernel_package.c_str(),
                  cached && cached->has_value() ? "built" : "-", r.description.c_str());
      if (cached && cached->has_value()) {
        std::printf("%-20s kernel %s\n%-20s initrd %s\n", "", (*cached)->kernel.c_str(), "",
                    (*cached)->initrd.c_str());
      }
    }
  }
  if (f.json) std::printf("%s\n", out.dump(2).c_str());
  return 0;
}

int RunBuild(const ImagesFlags& f) {
  auto store = OpenStore(f);
  if (!store) {
    std::fprintf(stderr, "patchlab images build: %s\n", store.error().ToString().c_str());
    return ExitFor(store.error());
  }
  std::vector<std::string> names = f.names;
  if (names.empty()) {
    for (const auto& r : store->recipes()) names.push_back(r.name);
  }
  if (store->options().hotpatch_binary.empty() || !fs::exists(store->options().hotpatch_binary)) {
    std::fprintf(
        stderr,
        "patchlab images build: note: no hotpatch binary found; images will not contain it\n");
  }
  int rc = 0;
  nlohmann::json out = nlohmann::json::array();
  for (const auto& name : names) {
    auto image = store->Build(name);
    if (!image) {
      std::fprintf(stderr, "patchlab images build: %s\n", image.error().ToString().c_str());
      rc = std::max(rc, ExitFor(image.error()));
      out.push_back({{"name", name}, {"error", image.error().ToString()}});
      continue;
    }
    out.push_back(ImageJson(*image));
    if (!f.json) {
      std::printf("%s: kernel %s (%s)\n%s: initrd %s\n", name.c_str(), image->kernel.c_str(),
                  image->kernel_release.c_str(), name.c_str(), image->initrd.c_str());
    }
  }
  if (f.json) std::printf("%s\n", out.dump(2).c_str());
  return rc;
}

void AddCommonFlags(CLI::App* sub, ImagesFlags& f) {
  sub->add_option("--recipes", f.recipes, "image recipes (default: vm-images/images.yaml)");
  sub->add_option("--cache", f.cache,
                  "cache folder (default: $PATCHLAB_CACHE or /var/cache/patchlab)");
  sub->add_option("--agent", f.agent, "guest agent binary (default: found beside this program)");
  sub->add_option("--hotpatch", f.hotpatch,
                  "hotpatch binary to include (default: found beside this program)");
  sub->add_flag("--json", f.json, "print JSON");
}

}  // namespace

void RegisterImagesCommand(CLI::App& app, CommandContext& ctx) {
  static ImagesFlags flags;
  CLI::App* images = app.add_subcommand("images", "build and list reference VM images");
  images->require_subcommand(1);
  CLI::App* list = images->add_subcommand("list", "list the image recipes and which are built");
  AddCommonFlags(list, flags);
  list->callback([&ctx] { ctx.exit_code = RunList(flags); });
  CLI::App* build =
      images->add_subcommand("build", "build images (all, or the NAMEs given); cached by content");
  AddCommonFlags(build, flags);
  build->add_option("name", flags.names, "image names (default: every recipe)");
  build->callback([&ctx] { ctx.exit_code = RunBuild(flags); });
}

}  // namespace patchlab::cli

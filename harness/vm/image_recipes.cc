// The recipe file vm-images/images.yaml (LoadImageRecipes, ParseImageRecipes in
// image_store.h): strict YAML, every error naming images.yaml:LINE:COL.
#include <string>
#include <vector>

#include "base/yaml_util.h"
#include "harness/vm/image_store.h"

namespace patchlab::harness {
namespace fs = std::filesystem;

namespace {

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

}  // namespace

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

}  // namespace patchlab::harness

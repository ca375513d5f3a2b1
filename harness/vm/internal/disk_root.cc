#include "harness/vm/internal/disk_root.h"

#include <unistd.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "base/file_util.h"
#include "base/subprocess.h"

namespace patchlab::harness::internal {
namespace fs = std::filesystem;

namespace {

// Bytes of every file under `root`, as the file system will hold them.
Result<uintmax_t> TreeBytes(const fs::path& root) {
  uintmax_t bytes = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec) && !it->is_symlink(ec)) bytes += it->file_size(ec);
  }
  if (ec) return Fail(ErrorCode::kIo, "listing {}: {}", root.string(), ec.message());
  return bytes;
}

Result<std::string> Run(std::vector<std::string> argv) {
  std::string what = argv.front();
  auto r = RunSubprocess({.argv = std::move(argv), .stderr_to_stdout = true});
  if (!r) return std::unexpected(r.error());
  if (!r->status.Success())
    return Fail(ErrorCode::kIo, "{} failed ({}): {}", what, r->status.ToString(), r->stdout_data);
  return r->stdout_data;
}

}  // namespace

Result<fs::path> MakeRootDisk(const fs::path& system_root) {
  fs::path disk = system_root.parent_path() / "root.ext4";
  if (fs::exists(disk)) return disk;
  auto bytes = TreeBytes(system_root);
  if (!bytes) return std::unexpected(bytes.error());
  // Room for inodes, directories and block rounding; nothing is written later.
  uintmax_t mib = *bytes * 13 / 10 / (1024 * 1024) + 64;
  fs::path tmp = disk.string() + fmt::format(".tmp-{}", ::getpid());
  std::error_code ec;
  fs::remove(tmp, ec);
  auto made = Run({"mkfs.ext4", "-q", "-F", "-O", "^has_journal,^metadata_csum", "-E",
                   "root_owner=0:0", "-L", "patchlab-root", "-d", system_root.string(),
                   tmp.string(), fmt::format("{}M", mib)});
  if (!made) {
    fs::remove(tmp, ec);
    return std::unexpected(std::move(made.error()).AddContext("making the root disk"));
  }
  fs::rename(tmp, disk, ec);
  if (ec) {
    fs::remove(tmp, ec);
    if (!fs::exists(disk))
      return Fail(ErrorCode::kIo, "cannot move the root disk to {}", disk.string());
  }
  return disk;
}

Result<std::vector<BootModule>> BootModules(const fs::path& kernel_root,
                                            const std::vector<std::string>& wanted) {
  fs::path modules = kernel_root / "lib/modules";
  std::error_code ec;
  fs::path release;
  for (const auto& e : fs::directory_iterator(modules, ec)) release = e.path();
  if (release.empty())
    return Fail(ErrorCode::kNotFound, "{} holds no kernel release", modules.string());
  std::set<std::string> builtin;
  if (auto text = ReadFile(release / "modules.builtin")) {
    size_t start = 0;
    while (start < text->size()) {
      size_t nl = std::min(text->find('\n', start), text->size());
      builtin.insert(fs::path(text->substr(start, nl - start)).stem().string());
      start = nl + 1;
    }
  }
  std::map<std::string, fs::path> files;  // module name -> .ko
  for (auto it = fs::recursive_directory_iterator(release / "kernel", ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->path().extension() == ".ko") files[it->path().stem().string()] = it->path();
  }
  std::vector<BootModule> out;
  std::set<std::string> added;
  // Depth first, dependencies before the module that needs them.
  std::function<Status(const std::string&)> add = [&](const std::string& name) -> Status {
    std::string n = name;
    std::replace(n.begin(), n.end(), '-', '_');
    if (added.contains(n) || builtin.contains(n)) return {};
    auto file = files.find(n);
    if (file == files.end())
      return Fail(ErrorCode::kNotFound, "kernel module {} is neither built in nor in {}", n,
                  release.string());
    added.insert(n);
    auto depends = Run({"modinfo", "-F", "depends", file->second.string()});
    if (!depends) return std::unexpected(depends.error());
    std::string deps = *depends;
    deps.erase(std::remove(deps.begin(), deps.end(), '\n'), deps.end());
    for (size_t start = 0; start < deps.size();) {
      size_t comma = std::min(deps.find(',', start), deps.size());
      if (comma > start) {
        if (auto s = add(deps.substr(start, comma - start)); !s) return s;
      }
      start = comma + 1;
    }
    auto bytes = ReadFile(file->second);
    if (!bytes) return std::unexpected(bytes.error());
    out.push_back({n + ".ko", std::move(*bytes)});
    return {};
  };
  for (const std::string& name : wanted) {
    if (auto s = add(name); !s) return std::unexpected(s.error());
  }
  return out;
}

}  // namespace patchlab::harness::internal

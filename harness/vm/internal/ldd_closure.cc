#include "harness/vm/internal/ldd_closure.h"

#include <sstream>

#include "base/subprocess.h"

namespace patchlab::harness::internal {

Result<std::vector<std::string>> LddClosure(const std::filesystem::path& binary) {
  SubprocessOptions o;
  o.argv = {"ldd", binary.string()};
  o.env_set = {{"LC_ALL", "C"}};
  o.timeout = std::chrono::seconds(30);
  auto r = RunSubprocess(std::move(o));
  if (!r) return std::unexpected(r.error());
  std::vector<std::string> libs;
  // ldd reports a static binary on stderr and exits 1.
  if (r->stderr_data.find("not a dynamic executable") != std::string::npos) return libs;
  std::istringstream in(r->stdout_data);
  for (std::string line; std::getline(in, line);) {
    // "\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)"
    // "\t/lib64/ld-linux-x86-64.so.2 (0x...)"
    // "\tlinux-vdso.so.1 (0x...)" (in the kernel, not a file)
    if (line.find("not a dynamic executable") != std::string::npos ||
        line.find("statically linked") != std::string::npos) {
      return libs;
    }
    if (line.find("=> not found") != std::string::npos) {
      std::string lib = line.substr(0, line.find("=>"));
      lib.erase(0, lib.find_first_not_of(" \t"));
      while (!lib.empty() && lib.back() == ' ') lib.pop_back();
      return Fail(ErrorCode::kNotFound, "{} needs {}, which the host does not have",
                  binary.string(), lib);
    }
    size_t arrow = line.find("=> ");
    std::string path;
    if (arrow != std::string::npos) {
      path = line.substr(arrow + 3);
    } else {
      path = line.substr(line.find_first_not_of(" \t"));
    }
    path = path.substr(0, path.find(" ("));
    if (!path.empty() && path.front() == '/') libs.push_back(path);
  }
  if (!r->status.Success() && libs.empty()) {
    return Fail(ErrorCode::kIo, "ldd {}: {}", binary.string(),
                r->stderr_data.substr(0, r->stderr_data.find('\n')));
  }
  return libs;
}

Result<std::filesystem::path> FindHostLibrary(const std::string& soname) {
  if (!soname.empty() && soname.front() == '/') {
    if (std::filesystem::exists(soname)) return std::filesystem::path(soname);
    return Fail(ErrorCode::kNotFound, "library {} does not exist on the host", soname);
  }
  for (const char* dir : {"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64",
                          "/usr/lib", "/lib", "/usr/local/lib"}) {
    std::filesystem::path p = std::filesystem::path(dir) / soname;
    if (std::filesystem::exists(p)) return p;
  }
  return Fail(
      ErrorCode::kNotFound,
      "library {} is not installed on the host (looked in the multiarch and /usr/lib folders)",
      soname);
}

}  // namespace patchlab::harness::internal

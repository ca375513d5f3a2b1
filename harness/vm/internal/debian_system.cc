#include "harness/vm/internal/debian_system.h"

#include <unistd.h>

#include <algorithm>
#include <sstream>

#include "base/file_util.h"
#include "base/log.h"
#include "base/subprocess.h"
#include "harness/vm/internal/debian_packages.h"

namespace patchlab::harness::internal {
namespace fs = std::filesystem;

namespace {

// Paths dpkg leaves out of the system: a guest reads no manual, and every
// byte of the root costs guest memory (the root lives in the initramfs).
constexpr const char* kPathExcludes[] = {
    "path-exclude=/usr/share/doc/*", "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*", "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/lintian/*"};

// mmdebstrap downloads every package; on a slow mirror that takes minutes.
constexpr auto kBuildTimeout = std::chrono::minutes(30);

fs::path SystemDir(const fs::path& cache_dir, const std::string& key) {
  return cache_dir / "systems" / key.substr(0, 24);
}

// Every installed package and its version, from the system's dpkg status file.
Result<std::map<std::string, std::string>> InstalledVersions(const fs::path& root) {
  auto status = ReadFile(root / "var/lib/dpkg/status");
  if (!status) return std::unexpected(status.error());
  std::map<std::string, std::string> out;
  std::istringstream in(*status);
  std::string package, version;
  bool installed = false;
  auto flush = [&] {
    if (installed && !package.empty()) out[package] = version;
    package.clear();
    version.clear();
    installed = false;
  };
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) flush();
    if (line.rfind("Package: ", 0) == 0) package = line.substr(9);
    if (line.rfind("Version: ", 0) == 0) version = line.substr(9);
    if (line.rfind("Status: ", 0) == 0) installed = line.find(" installed") != std::string::npos;
  }
  flush();
  return out;
}

Result<DebianSystem> Found(const fs::path& dir, const std::string& key) {
  auto versions = InstalledVersions(dir / "root");
  if (!versions) return std::unexpected(versions.error());
  return DebianSystem{dir / "root", key, std::move(*versions)};
}

// Names the first package apt does not know, before mmdebstrap downloads
// anything: its own error would come minutes later and less plainly.
Status CheckPackagesExist(const DebianSystemSpec& spec, const fs::path& cache_dir) {
  for (const std::string& name : spec.packages) {
    auto resolved = ResolvePackage(name, cache_dir);
    if (!resolved) {
      return std::unexpected(
          std::move(resolved.error()).AddContext(fmt::format("{}: system.packages", spec.where)));
    }
  }
  return {};
}

std::vector<std::string> MmdebstrapArgv(const DebianSystemSpec& spec, const fs::path& target) {
  std::vector<std::string> argv = {"mmdebstrap", "--mode=root", "--variant=essential"};
  std::string include;
  for (const std::string& p : spec.packages) include += (include.empty() ? "" : ",") + p;
  if (!include.empty()) argv.push_back("--include=" + include);
  for (const char* e : kPathExcludes) argv.push_back(std::string("--dpkgopt=") + e);
  // No MIRROR argument: for a stable suite mmdebstrap uses Debian's archive
  // with its -updates and -security suites, as a fleet's machines do.
  argv.push_back(spec.suite);
  argv.push_back(target.string());
  return argv;
}

}  // namespace

std::string AptErrorLines(std::string_view output) {
  std::vector<std::string> errors;
  std::string last;
  std::istringstream in{std::string(output)};
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    last = line;
    if (line.rfind("E: ", 0) == 0 || line.rfind("dpkg: error", 0) == 0 ||
        line.find("Unable to locate package") != std::string::npos) {
      errors.push_back(line);
    }
  }
  if (errors.empty()) return last.empty() ? "no output" : last;
  std::string out;
  size_t from = errors.size() > 3 ? errors.size() - 3 : 0;
  for (size_t i = from; i < errors.size(); ++i) out += (out.empty() ? "" : "; ") + errors[i];
  return out;
}

std::string DebianSystemKey(const DebianSystemSpec& spec) {
  std::vector<std::string> packages = spec.packages;
  std::sort(packages.begin(), packages.end());
  std::string key = "mmdebstrap essential\n" + spec.suite + "\n";
  for (const std::string& p : packages) key += p + "\n";
  for (const char* e : kPathExcludes) key += std::string(e) + "\n";
  return Sha256Hex(key);
}

Result<DebianSystem> CachedDebianSystem(const DebianSystemSpec& spec, const fs::path& cache_dir) {
  std::string key = DebianSystemKey(spec);
  fs::path dir = SystemDir(cache_dir, key);
  if (!fs::exists(dir / "complete")) {
    return Fail(ErrorCode::kNotFound, "{}: the Debian system is not built yet", spec.where);
  }
  return Found(dir, key);
}

Result<DebianSystem> BuildDebianSystem(const DebianSystemSpec& spec, const fs::path& cache_dir) {
  if (auto cached = CachedDebianSystem(spec, cache_dir)) return cached;
  if (auto s = CheckPackagesExist(spec, cache_dir); !s) return std::unexpected(s.error());
  std::string key = DebianSystemKey(spec);
  fs::path dir = SystemDir(cache_dir, key);
  fs::path tmp = dir.string() + fmt::format(".tmp-{}", ::getpid());
  std::error_code ec;
  fs::remove_all(tmp, ec);
  if (auto s = MakeDirs(tmp); !s) return std::unexpected(s.error());

  Log("harness")->info("{}: building a Debian {} system with mmdebstrap ({} packages)", spec.where,
                       spec.suite, spec.packages.size());
  SubprocessOptions o;
  o.argv = MmdebstrapArgv(spec, tmp / "root");
  o.env_set = {{"LC_ALL", "C"}, {"DEBIAN_FRONTEND", "noninteractive"}};
  o.stderr_to_stdout = true;
  o.timeout = kBuildTimeout;
  auto r = RunSubprocess(std::move(o));
  if (!r) {
    fs::remove_all(tmp, ec);
    return Fail(ErrorCode::kNotFound, "{}: cannot run mmdebstrap (apt-get install mmdebstrap): {}",
                spec.where, r.error().ToString());
  }
  if (!r->status.Success()) {
    (void)WriteFileAtomic(tmp.string() + ".log", r->stdout_data);
    fs::remove_all(tmp, ec);
    return Fail(ErrorCode::kInfra, "{}: mmdebstrap {} failed ({}): {} (whole log: {}.log)",
                spec.where, spec.suite, r->status.ToString(), AptErrorLines(r->stdout_data),
                tmp.string());
  }
  if (auto s = WriteFileAtomic(tmp / "mmdebstrap.log", r->stdout_data); !s)
    return std::unexpected(s.error());
  if (auto s = WriteFileAtomic(tmp / "complete", key + "\n"); !s) return std::unexpected(s.error());
  fs::rename(tmp, dir, ec);
  if (ec) {
    fs::remove_all(tmp, ec);  // a concurrent build got there first
    if (!fs::exists(dir / "complete"))
      return Fail(ErrorCode::kIo, "{}: cannot move the system into {}", spec.where, dir.string());
  }
  return Found(dir, key);
}

}  // namespace patchlab::harness::internal

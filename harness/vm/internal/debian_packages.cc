#include "harness/vm/internal/debian_packages.h"

#include <unistd.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "base/file_util.h"
#include "base/log.h"
#include "base/subprocess.h"

namespace patchlab::harness::internal {
namespace fs = std::filesystem;

namespace {

Result<SubprocessResult> RunApt(std::vector<std::string> argv, const std::string& cwd = "") {
  SubprocessOptions o;
  o.argv = std::move(argv);
  o.cwd = cwd;
  o.env_set = {{"LC_ALL", "C"}, {"DEBIAN_FRONTEND", "noninteractive"}};
  o.timeout = std::chrono::minutes(10);
  return RunSubprocess(std::move(o));
}

std::string FirstLine(const std::string& s) {
  std::string line = s.substr(0, s.find('\n'));
  return line.empty() ? "no output" : line;
}

// "Field: value" of the first stanza in apt-cache show output.
std::string Field(const std::string& stanza, const std::string& field) {
  std::istringstream in(stanza);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) break;
    if (line.rfind(field + ": ", 0) == 0) return line.substr(field.size() + 2);
  }
  return {};
}

Result<DebianPackage> Show(const std::string& name) {
  auto r = RunApt({"apt-cache", "show", "--no-all-versions", name});
  if (!r) return std::unexpected(r.error());
  if (!r->status.Success() || r->stdout_data.empty()) {
    return Fail(ErrorCode::kNotFound, "package {}: apt-cache show: {}", name,
                FirstLine(r->stderr_data));
  }
  DebianPackage p{Field(r->stdout_data, "Package"), Field(r->stdout_data, "Version"),
                  fs::path(Field(r->stdout_data, "Filename")).filename().string()};
  if (p.name.empty() || p.version.empty() || p.filename.empty()) {
    return Fail(ErrorCode::kNotFound, "package {}: apt-cache show gave no Package/Version/Filename",
                name);
  }
  return p;
}

}  // namespace

namespace {

Result<DebianPackage> ResolveWithApt(const std::string& name) {
  // Meta packages (linux-image-cloud-amd64) carry no kernel: follow their
  // dependency to the versioned linux-image-* package. A versioned kernel
  // package depends on no other linux-image-*, so the rule holds for any
  // release without knowing version patterns.
  if (name.rfind("linux-image-", 0) == 0) {
    auto deps = RunApt({"apt-cache", "depends", "--important", name});
    if (!deps) return std::unexpected(deps.error());
    std::istringstream in(deps->stdout_data);
    for (std::string line; std::getline(in, line);) {
      size_t at = line.find("Depends: linux-image-");
      if (at == std::string::npos) continue;
      std::string dep = line.substr(at + 9);
      while (!dep.empty() && (dep.back() == ' ' || dep.back() == '\r')) dep.pop_back();
      if (dep.front() == '<') continue;  // virtual, no candidate
      Log("harness")->debug("kernel package {} resolves to {}", name, dep);
      return Show(dep);
    }
  }
  return Show(name);
}

// apt's view changes only with `apt-get update`, which rewrites the lists folder.
std::string AptListsStamp() {
  std::error_code ec;
  auto t = fs::last_write_time("/var/lib/apt/lists", ec);
  return ec ? std::string("unknown") : std::to_string(t.time_since_epoch().count());
}

}  // namespace

Result<DebianPackage> ResolvePackage(const std::string& name, const fs::path& cache_dir) {
  // apt-cache takes seconds on a loaded machine; a rebuild from the cache must not.
  fs::path memo_file = cache_dir / "resolved.json";
  std::string key = name + "@" + AptListsStamp();
  nlohmann::json memo = nlohmann::json::object();
  if (auto text = ReadFile(memo_file)) {
    memo = nlohmann::json::parse(*text, nullptr, false);
    if (!memo.is_object()) memo = nlohmann::json::object();
  }
  if (memo.contains(key) && memo[key].is_object()) {
    const auto& m = memo[key];
    return DebianPackage{m.value("name", ""), m.value("version", ""), m.value("filename", "")};
  }
  auto resolved = ResolveWithApt(name);
  if (!resolved) {
    std::string hint = "run apt-get update, or pick a package that `apt-cache search` lists";
    return std::unexpected(std::move(resolved.error()).AddContext(hint));
  }
  memo[key] = {
      {"name", resolved->name}, {"version", resolved->version}, {"filename", resolved->filename}};
  if (MakeDirs(cache_dir)) (void)WriteFileAtomic(memo_file, memo.dump(2) + "\n");
  return resolved;
}

Result<fs::path> FetchDeb(const DebianPackage& package, const fs::path& debs_dir) {
  fs::path deb = debs_dir / package.filename;
  if (fs::exists(deb)) return deb;
  if (auto s = MakeDirs(debs_dir); !s) return std::unexpected(s.error());
  // Download into a private folder, then rename: a concurrent or interrupted
  // fetch never leaves a partial .deb under its final name.
  fs::path tmp = debs_dir / fmt::format(".fetch-{}-{}", package.name, ::getpid());
  std::error_code ec;
  fs::remove_all(tmp, ec);
  if (auto s = MakeDirs(tmp); !s) return std::unexpected(s.error());
  Log("harness")->info("fetching {} {} with apt-get download", package.name, package.version);
  auto r =
      RunApt({"apt-get", "download", "-q", fmt::format("{}={}", package.name, package.version)},
             tmp.string());
  if (!r) return std::unexpected(r.error());
  if (!r->status.Success() || !fs::exists(tmp / package.filename)) {
    fs::remove_all(tmp, ec);
    std::string why = r->stderr_data.empty() ? r->stdout_data : r->stderr_data;
    // apt prints warnings (e.g. about the _apt sandbox) before the real error.
    std::string last_error;
    std::istringstream in(why);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("E:", 0) == 0) last_error = line;
    }
    return Fail(ErrorCode::kNotFound, "package {} {} cannot be fetched: {}", package.name,
                package.version, last_error.empty() ? FirstLine(why) : last_error);
  }
  fs::rename(tmp / package.filename, deb, ec);
  fs::remove_all(tmp, ec);
  if (!fs::exists(deb))
    return Fail(ErrorCode::kIo, "moving {} into {}: {}", package.filename, debs_dir.string(),
                ec.message());
  return deb;
}

Status ExtractDeb(const fs::path& deb, const fs::path& dir) {
  if (fs::exists(dir)) return {};
  fs::path tmp = dir.string() + fmt::format(".tmp-{}", ::getpid());
  std::error_code ec;
  fs::remove_all(tmp, ec);
  if (auto s = MakeDirs(tmp); !s) return s;
  auto r = RunApt({"dpkg", "-x", deb.string(), tmp.string()});
  if (!r) return std::unexpected(r.error());
  if (!r->status.Success()) {
    fs::remove_all(tmp, ec);
    return Fail(ErrorCode::kIo, "dpkg -x {}: {}", deb.string(), FirstLine(r->stderr_data));
  }
  fs::rename(tmp, dir, ec);
  if (ec && !fs::exists(dir))
    return Fail(ErrorCode::kIo, "rename {} -> {}: {}", tmp.string(), dir.string(), ec.message());
  fs::remove_all(tmp, ec);  // another process won the race; its copy is identical
  return {};
}

}  // namespace patchlab::harness::internal

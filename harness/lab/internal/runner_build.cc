#include "harness/lab/internal/runner_build.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdlib>

#include "base/elf_file.h"
#include "base/file_util.h"
#include "base/log.h"
#include "base/scoped_fd.h"
#include "base/subprocess.h"

namespace patchlab::harness::internal {
namespace {

namespace fs = std::filesystem;

// A tool's failure, for people: its argv[0], how it ended, and the first lines
// of what it said (a compiler's first error is the one that matters).
std::string Describe(const std::vector<std::string>& argv, const SubprocessResult& r) {
  std::string text = r.stdout_data + r.stderr_data;
  std::string head;
  int lines = 0;
  for (size_t pos = 0; pos < text.size() && lines < 8; ++lines) {
    size_t nl = text.find('\n', pos);
    head += "\n    " + text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? text.size() : nl + 1;
  }
  return fmt::format("{} ({}){}", argv[0], r.status.ToString(), head);
}

// Runs one build tool in `cwd`, appending its command and output to `log`.
Result<SubprocessResult> RunTool(const std::vector<std::string>& argv, const fs::path& cwd,
                                 std::string& log) {
  SubprocessOptions o;
  o.argv = argv;
  o.cwd = cwd.string();
  o.timeout = std::chrono::minutes(2);
  auto r = RunSubprocess(std::move(o));
  log += "$";
  for (const auto& a : argv) log += " " + a;
  log += "\n";
  if (r) log += r->stdout_data + r->stderr_data + "(" + r->status.ToString() + ")\n";
  return r;
}

std::string Joined(const std::vector<FunctionMap>& functions) {
  std::string out;
  for (const auto& f : functions) out += (out.empty() ? "" : ",") + f.old_name;
  return out;
}

}  // namespace

fs::path DefaultKeyDir() {
  if (const char* home = std::getenv("PATCHLAB_HOME"); home != nullptr && *home != '\0') {
    return fs::path(home) / "keys";
  }
  if (geteuid() == 0) return "/var/lib/patchlab/keys";
  const char* user_home = std::getenv("HOME");
  if (user_home == nullptr || *user_home == '\0') {
    const passwd* pw = getpwuid(geteuid());
    user_home = pw != nullptr ? pw->pw_dir : "/tmp";
  }
  return fs::path(user_home) / ".local/share/patchlab/keys";
}

Result<LabKey> EnsureLabKey(const fs::path& key_dir, const fs::path& hotpatch) {
  // Absolute: keygen runs inside the folder, where a relative --out would nest.
  const fs::path dir = fs::absolute(key_dir);
  LabKey key{dir / "patch.key", dir / "patch.pub"};
  if (auto s = MakeDirs(dir, 0700); !s) return std::unexpected(s.error());
  // Two lab runs starting together must not both make a key: the second would
  // replace the pair the first already signed with.
  fs::path lock_path = dir / ".keygen.lock";
  ScopedFd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock) return FailErrno("open " + lock_path.string());
  if (::flock(lock.get(), LOCK_EX) != 0) return FailErrno("flock " + lock_path.string());
  std::error_code ec;
  if (fs::exists(key.private_key, ec) && fs::exists(key.public_key, ec)) return key;
  std::string log;
  std::vector<std::string> argv = {hotpatch.string(), "keygen", "--out", dir.string()};
  auto r = RunTool(argv, dir, log);
  if (!r) return std::unexpected(std::move(r.error()).AddContext("making the lab's signing key"));
  if (!r->status.Success() || !fs::exists(key.private_key, ec) || !fs::exists(key.public_key, ec)) {
    return Fail(ErrorCode::kInfra, "making the lab's signing key in {}: {}", dir.string(),
                Describe(argv, *r));
  }
  Log("harness")->info("made the lab's signing key in {}", dir.string());
  return key;
}

// The target compiled from its sources into `abs_work`. kInvalidArgument
// quoting the compiler when it does not build.
Result<fs::path> CompileTarget(const Scenario& scenario, const fs::path& abs_work,
                               const std::string& cc, std::string& log) {
  fs::path program = abs_work / scenario.target.program;
  // -g and symbols kept: the patch core finds private functions by .symtab.
  std::vector<std::string> argv = {cc, "-O2", "-g", "-pthread"};
  argv.insert(argv.end(), scenario.target.cflags.begin(), scenario.target.cflags.end());
  argv.insert(argv.end(), scenario.target.sources.begin(), scenario.target.sources.end());
  argv.insert(argv.end(), {"-o", program.string()});
  argv.insert(argv.end(), scenario.target.libs.begin(), scenario.target.libs.end());
  auto r = RunTool(argv, scenario.dir, log);
  if (!r)
    return std::unexpected(std::move(r.error()).AddContext("compiling " + scenario.target.program));
  if (!r->status.Success()) {
    return Fail(ErrorCode::kInvalidArgument, "{}: target {} does not build: {} (full log: {})",
                scenario.file.string(), scenario.target.program, Describe(argv, *r),
                (abs_work / "build.log").string());
  }
  return program;
}

// A patch the user built and signed: used as it is, with its own key.
Result<BuiltPatch> PrebuiltPatch(const Scenario& scenario, const PatchSpec& spec) {
  BuiltPatch p;
  p.spec = &spec;
  p.package = fs::absolute(scenario.dir / spec.package);
  p.public_key = fs::absolute(scenario.dir / spec.pubkey);
  p.module = spec.module;
  auto bytes = ReadFile(p.package);
  if (!bytes) return std::unexpected(std::move(bytes.error()).AddContext(spec.where));
  p.package_sha256 = Sha256Hex(*bytes);
  return p;
}

Result<BuiltScenario> BuildScenario(const Scenario& scenario, const fs::path& work_dir,
                                    const LabKey& key, const fs::path& hotpatch,
                                    const std::string& cc, const fs::path& module_root) {
  if (auto s = MakeDirs(work_dir); !s) return std::unexpected(s.error());
  fs::path abs_work = fs::absolute(work_dir);
  std::string log;
  auto finish = [&]() { (void)WriteFileAtomic(abs_work / "build.log", log); };
  auto scenario_error = [&](std::string what, const std::vector<std::string>& argv,
                            const SubprocessResult& r) {
    finish();
    return Fail(ErrorCode::kInvalidArgument, "{}: {}: {} (full log: {})", scenario.file.string(),
                what, Describe(argv, r), (abs_work / "build.log").string());
  };

  BuiltScenario built;
  built.scenario = &scenario;
  if (scenario.target.Built()) {
    auto program = CompileTarget(scenario, abs_work, cc, log);
    if (!program) {
      finish();
      return std::unexpected(program.error());
    }
    built.program = *program;
  } else if (!scenario.target.binary.empty()) {
    built.program = fs::absolute(scenario.dir / scenario.target.binary);
  }

  for (const PatchSpec& spec : scenario.patches) {
    if (spec.Prebuilt()) {
      auto p = PrebuiltPatch(scenario, spec);
      if (!p) return std::unexpected(p.error());
      built.patches.push_back(std::move(*p));
      continue;
    }
    BuiltPatch p;
    p.spec = &spec;
    std::vector<std::string> argv;
    Result<SubprocessResult> r;
    p.object = abs_work / (spec.id + ".so");
    p.package = abs_work / (spec.id + ".hpk");
    p.module = spec.module.empty() ? built.program : fs::path(spec.module);
    std::error_code ec;
    if (!spec.module.empty() && !module_root.empty() &&
        fs::exists(module_root / fs::path(spec.module).relative_path(), ec)) {
      p.module = module_root / fs::path(spec.module).relative_path();
    }
    if (!fs::exists(p.module, ec)) {
      finish();
      return Fail(ErrorCode::kInvalidArgument,
                  "{}: patch '{}': module {} does not exist on this host", spec.where, spec.id,
                  p.module.string());
    }
    auto elf = ElfFile::Open(p.module);
    if (!elf)
      return std::unexpected(std::move(elf.error()).AddContext(fmt::format("patch '{}'", spec.id)));
    p.target_build_id = elf->build_id();

    argv = {cc, "-O2", "-g", "-fPIC", "-shared", "-fno-stack-protector"};
    argv.insert(argv.end(), spec.cflags.begin(), spec.cflags.end());
    argv.insert(argv.end(), spec.sources.begin(), spec.sources.end());
    argv.insert(argv.end(), {"-o", p.object.string()});
    r = RunTool(argv, scenario.dir, log);
    if (!r) return std::unexpected(std::move(r.error()).AddContext("compiling patch " + spec.id));
    if (!r->status.Success())
      return scenario_error("patch '" + spec.id + "' does not build", argv, *r);

    argv = {hotpatch.string(), "pack", "--target", p.module.string(), "--object",
            p.object.string(), "--id", spec.id,    "--seq",           std::to_string(spec.seq)};
    for (const auto& f : spec.functions) {
      argv.insert(argv.end(), {"--func", f.old_name == f.new_name ? f.old_name
                                                                  : f.old_name + "=" + f.new_name});
    }
    for (const auto& ref : spec.references) argv.insert(argv.end(), {"--ref", ref});
    if (!spec.replaces.empty()) argv.insert(argv.end(), {"--replaces", spec.replaces});
    argv.insert(argv.end(), {"--key", key.private_key.string(), "-o", p.package.string()});
    r = RunTool(argv, scenario.dir, log);
    if (!r) return std::unexpected(std::move(r.error()).AddContext("packing patch " + spec.id));
    if (r->status.exited && r->status.code == 2) {
      return scenario_error(
          fmt::format("patch '{}' ({}) cannot be packed", spec.id, Joined(spec.functions)), argv,
          *r);
    }
    if (!r->status.Success()) {
      finish();
      return Fail(ErrorCode::kInfra, "{}: packing patch '{}': {}", scenario.file.string(), spec.id,
                  Describe(argv, *r));
    }
    auto bytes = ReadFile(p.package);
    if (!bytes) return std::unexpected(bytes.error());
    p.package_sha256 = Sha256Hex(*bytes);
    built.patches.push_back(std::move(p));
  }
  finish();
  return built;
}

std::string LibraryBuildMismatch(const BuiltPatch& patch, const fs::path& image_root,
                                 const std::string& image) {
  const PatchSpec& spec = *patch.spec;
  if (spec.module.empty() || patch.target_build_id.empty() || image_root.empty()) return "";
  fs::path file = image_root / fs::path(spec.module).relative_path();
  auto elf = ElfFile::Open(file);
  if (!elf) {
    return fmt::format("{}: patch '{}': patch.module {} is not a library in image {}: {}",
                       spec.where, spec.id, spec.module, image, elf.error().ToString());
  }
  if (elf->build_id() == patch.target_build_id) return "";
  return fmt::format(
      "{}: patch '{}' was packed against {} build-id {}; image {} has build-id {}: a patch fits "
      "one build of its library (run it on images with that build, or split the scenario per "
      "build)",
      spec.where, spec.id, spec.module, patch.target_build_id, image, elf->build_id());
}

}  // namespace patchlab::harness::internal

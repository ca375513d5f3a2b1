#include "harness/lab/internal/scenario_app.h"

#include <filesystem>
#include <regex>

namespace patchlab::harness::internal {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

bool IsPlainRelativePath(const std::string& p) {
  if (p.empty() || p[0] == '/') return false;
  for (const auto& part : fs::path(p)) {
    if (part == "..") return false;
  }
  return true;
}

Result<GuestCommand> GetCommand(const YamlMap& m, std::string_view key) {
  auto argv = m.GetStrings(key);
  if (!argv) return std::unexpected(argv.error());
  if (argv->empty() || (*argv)[0].empty())
    return std::unexpected(m.ErrorAt(key, "must be a non-empty command (a list: [program, args])"));
  return GuestCommand{*argv,
                      fmt::format("{}: {}", YamlWhere(m.file(), m.Node(key)), m.FieldPath(key))};
}

Result<milliseconds> GetDurationOr(const YamlMap& m, std::string_view key, milliseconds fallback) {
  if (!m.Has(key)) return fallback;
  auto text = m.Get<std::string>(key);
  if (!text) return std::unexpected(text.error());
  auto d = ParseDuration(*text);
  if (!d) return std::unexpected(m.ErrorAt(key, d.error().message()));
  return *d;
}

Result<ServiceSpec> ParseService(const YamlMap& workload) {
  auto m = workload.Map("service");
  if (!m) return std::unexpected(m.error());
  if (auto s = m->AllowOnly({"command", "ready", "stop", "ready_timeout"}); !s)
    return std::unexpected(s.error());
  ServiceSpec service;
  auto command = GetCommand(*m, "command");
  if (!command) return std::unexpected(command.error());
  service.command = std::move(*command);
  auto ready = GetCommand(*m, "ready");
  if (!ready) return std::unexpected(ready.error());
  service.ready = std::move(*ready);
  if (m->Has("stop")) {
    auto stop = GetCommand(*m, "stop");
    if (!stop) return std::unexpected(stop.error());
    service.stop = std::move(*stop);
  }
  auto timeout = GetDurationOr(*m, "ready_timeout", service.ready_timeout);
  if (!timeout) return std::unexpected(timeout.error());
  if (*timeout < milliseconds(100))
    return std::unexpected(m->ErrorAt("ready_timeout", "must be at least 100ms"));
  service.ready_timeout = *timeout;
  return service;
}

Result<LoadSpec> ParseLoad(const YamlMap& workload) {
  auto m = workload.Map("load");
  if (!m) return std::unexpected(m.error());
  if (auto s = m->AllowOnly({"command", "work", "latency"}); !s) return std::unexpected(s.error());
  LoadSpec load;
  auto command = GetCommand(*m, "command");
  if (!command) return std::unexpected(command.error());
  load.command = std::move(*command);
  auto work = m->Get<std::string>("work");
  if (!work) return std::unexpected(work.error());
  if (auto s = CheckRegex(*m, "work", *work); !s) return std::unexpected(s.error());
  load.work = *work;
  load.work_where =
      fmt::format("{}: {}", YamlWhere(m->file(), m->Node("work")), m->FieldPath("work"));
  if (m->Has("latency")) {
    auto lat = m->Map("latency");
    if (!lat) return std::unexpected(lat.error());
    for (const auto& kv : lat->node()) {
      std::string name = kv.first.as<std::string>("");
      auto pattern = lat->Get<std::string>(name);
      if (!pattern) return std::unexpected(pattern.error());
      if (auto s = CheckRegex(*lat, name, *pattern); !s) return std::unexpected(s.error());
      load.latency.emplace_back(name, *pattern);
    }
  }
  return load;
}

Result<CheckSpec> ParseCheck(const YamlMap& workload) {
  auto m = workload.Map("check");
  if (!m) return std::unexpected(m.error());
  if (auto s = m->AllowOnly({"command", "output"}); !s) return std::unexpected(s.error());
  CheckSpec check;
  auto command = GetCommand(*m, "command");
  if (!command) return std::unexpected(command.error());
  check.command = std::move(*command);
  auto output = m->GetOr<std::string>("output", "");
  if (!output) return std::unexpected(output.error());
  if (auto s = CheckRegex(*m, "output", *output); !s) return std::unexpected(s.error());
  check.output = *output;
  return check;
}

}  // namespace

Status CheckRegex(const YamlMap& m, std::string_view key, const std::string& pattern) {
  try {
    std::regex re(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    return std::unexpected(
        m.ErrorAt(key, fmt::format("'{}' is not a valid regex: {}", pattern, e.what())));
  }
  return {};
}

Status ParseAppTarget(const YamlMap& m, TargetSpec& out) {
  auto program = m.GetOr<std::string>("program", "");
  if (!program) return std::unexpected(program.error());
  auto package = m.GetOr<std::string>("package", "");
  if (!package) return std::unexpected(package.error());
  auto binary = m.GetOr<std::string>("binary", "");
  if (!binary) return std::unexpected(binary.error());
  if (program->empty() && !binary->empty())
    *program = "/usr/local/bin/" + fs::path(*binary).filename().string();
  if (program->empty()) {
    return std::unexpected(m.ErrorAt(
        "program", "is required: the program's absolute path in the guest (or sources to build)"));
  }
  if ((*program)[0] != '/') {
    return std::unexpected(m.ErrorAt(
        "program", fmt::format("'{}' must be an absolute path in the guest when the lab does not "
                               "build it (no target.sources)",
                               *program)));
  }
  if (!package->empty() && package->find_first_of(" /,=") != std::string::npos)
    return std::unexpected(m.ErrorAt("package", "must be a Debian package name"));
  out.program = *program;
  out.package = *package;
  out.binary = *binary;
  out.where = YamlWhere(m.file(), m.Has("program") ? m.Node("program") : m.node());
  return {};
}

Status ParsePrebuiltPatch(const YamlMap& m, PatchSpec& out) {
  for (const char* key : {"package", "pubkey"}) {
    auto value = m.Get<std::string>(key);
    if (!value) return std::unexpected(value.error());
    if (!IsPlainRelativePath(*value) && !fs::path(*value).is_absolute())
      return std::unexpected(m.ErrorAt(key, "must be a path inside the scenario folder"));
    (std::string_view(key) == "package" ? out.package : out.pubkey) = *value;
  }
  for (const char* key : {"sources", "functions", "references", "replaces", "cflags"}) {
    if (m.Has(key)) {
      return std::unexpected(m.ErrorAt(
          key, "does not go with a prebuilt patch.package (the package already holds it)"));
    }
  }
  return {};
}

Status ParseAppWorkload(const YamlMap& m, WorkloadSpec& out) {
  if (m.Has("command")) {
    return std::unexpected(
        m.ErrorAt("command",
                  "is for targets the lab builds; a real application is started by "
                  "workload.service.command"));
  }
  if (!m.Has("service")) {
    return std::unexpected(
        m.ErrorAt("", "needs a service: (command, ready) for a target the lab does not build"));
  }
  auto service = ParseService(m);
  if (!service) return std::unexpected(service.error());
  out.service = std::move(*service);
  if (m.Has("load")) {
    auto load = ParseLoad(m);
    if (!load) return std::unexpected(load.error());
    out.load = std::move(*load);
  }
  if (m.Has("check")) {
    auto check = ParseCheck(m);
    if (!check) return std::unexpected(check.error());
    out.check = std::move(*check);
  }
  if (!out.load && !out.check) {
    return std::unexpected(
        m.ErrorAt("", "needs a load: (a generator) or a check: to count the work done"));
  }
  if (m.Has("files")) {
    auto files = m.GetStrings("files");
    if (!files) return std::unexpected(files.error());
    for (const auto& f : *files) {
      if (!IsPlainRelativePath(f))
        return std::unexpected(
            m.ErrorAt("files", fmt::format("'{}' must be a path inside the scenario folder", f)));
    }
    out.files = std::move(*files);
  }
  return {};
}

}  // namespace patchlab::harness::internal

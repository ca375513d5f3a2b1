#include "harness/lab/scenario.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <set>

#include "base/yaml_util.h"
#include "emulator/semantic_spec.h"
#include "harness/lab/internal/scenario_app.h"

namespace patchlab::harness {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

// Propagates the error of a Result-returning expression, else yields its value.
#define PL_TRY(var, expr)                                          \
  auto var##_result = (expr);                                      \
  if (!var##_result) return std::unexpected(var##_result.error()); \
  auto var = std::move(*var##_result)

#define PL_CHECK(expr)                                             \
  do {                                                             \
    if (auto _s = (expr); !_s) return std::unexpected(_s.error()); \
  } while (0)

// Names in argv and file names must not escape the scenario folder or carry
// shell syntax: the runner passes them to the compiler and into the guest.
bool IsPlainRelativePath(const std::string& p) {
  if (p.empty() || p[0] == '/') return false;
  for (const auto& part : fs::path(p)) {
    if (part == "..") return false;
  }
  return true;
}

bool IsIdentifier(const std::string& s) {
  if (s.empty() || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '@';
  });
}

bool IsName(const std::string& s) {
  if (s.empty()) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
  });
}

Error ItemError(const YamlMap& m, const YAML::Node& item, std::string_view key, std::string msg) {
  return Error(ErrorCode::kParse,
               fmt::format("{}: {}: {}", YamlWhere(m.file(), item), m.FieldPath(key), msg));
}

Result<milliseconds> GetDuration(const YamlMap& m, std::string_view key) {
  PL_TRY(text, m.Get<std::string>(key));
  auto d = ParseDuration(text);
  if (!d) return std::unexpected(m.ErrorAt(key, d.error().message()));
  return *d;
}

Result<milliseconds> GetDurationOr(const YamlMap& m, std::string_view key, milliseconds fallback) {
  if (!m.Has(key)) return fallback;
  return GetDuration(m, key);
}

Result<int> GetIntInRange(const YamlMap& m, std::string_view key, int fallback, int lo, int hi) {
  PL_TRY(v, m.GetOr<int>(key, fallback));
  if (v < lo || v > hi) {
    return std::unexpected(
        m.ErrorAt(key, fmt::format("must be between {} and {}, got {}", lo, hi, v)));
  }
  return v;
}

Result<std::vector<std::string>> GetStringsOr(const YamlMap& m, std::string_view key) {
  if (!m.Has(key)) return std::vector<std::string>{};
  return m.GetStrings(key);
}

Result<std::vector<std::string>> GetSources(const YamlMap& m, std::string_view key) {
  PL_TRY(sources, m.GetStrings(key));
  if (sources.empty()) return std::unexpected(m.ErrorAt(key, "must name at least one source file"));
  for (const auto& s : sources) {
    if (!IsPlainRelativePath(s)) {
      return std::unexpected(
          m.ErrorAt(key, fmt::format("'{}' must be a path inside the scenario folder", s)));
    }
  }
  return sources;
}

// What a real-application scenario names on the host: the prebuilt binary,
// prebuilt packages and keys, the workload's files; and a patch of a program
// the lab did not build needs a file to be packed against.
Status CheckAppFiles(const Scenario& s, const YamlMap& root) {
  auto missing = [&](const std::string& where, const std::string& field, const fs::path& f) {
    return Fail(ErrorCode::kParse, "{}: {}: {} does not exist", where, field, f.string());
  };
  if (!s.target.binary.empty() && !fs::exists(s.dir / s.target.binary))
    return missing(s.target.where, "target.binary", s.dir / s.target.binary);
  for (const auto& p : s.patches) {
    if (p.Prebuilt()) {
      if (!fs::exists(s.dir / p.package))
        return missing(p.where, "patch.package", s.dir / p.package);
      if (!fs::exists(s.dir / p.pubkey)) return missing(p.where, "patch.pubkey", s.dir / p.pubkey);
    } else if (!s.target.Built() && p.module.empty() && s.target.binary.empty()) {
      return Fail(ErrorCode::kParse,
                  "{}: patch '{}': the lab builds a patch against the file it patches; for a "
                  "program it does not build, name a library (patch.module), the program's "
                  "host copy (target.binary), or give a prebuilt patch.package",
                  p.where, p.id);
    }
  }
  for (const auto& w : s.workloads) {
    for (const auto& f : w.files) {
      if (!fs::exists(s.dir / f)) {
        return std::unexpected(root.ErrorAt(
            "workload",
            fmt::format("workload '{}': file {} does not exist", w.name, (s.dir / f).string())));
      }
    }
  }
  return {};
}

Result<TargetSpec> ParseTarget(const YamlMap& root) {
  PL_TRY(m, root.Map("target"));
  PL_CHECK(m.AllowOnly({"program", "sources", "cflags", "libs", "package", "binary"}));
  TargetSpec t;
  if (!m.Has("sources")) {
    // A real application the lab does not build: measured from outside.
    for (const char* key : {"cflags", "libs"}) {
      if (m.Has(key))
        return std::unexpected(m.ErrorAt(key, "is for a target built from target.sources"));
    }
    PL_CHECK(internal::ParseAppTarget(m, t));
    return t;
  }
  for (const char* key : {"package", "binary"}) {
    if (m.Has(key)) {
      return std::unexpected(
          m.ErrorAt(key, "is for a target the lab does not build (drop target.sources to use it)"));
    }
  }
  t.where = YamlWhere(m.file(), m.Node("program"));
  PL_TRY(program, m.Get<std::string>("program"));
  if (!IsName(program)) {
    return std::unexpected(
        m.ErrorAt("program", "must be a plain file name (letters, digits, - _ .)"));
  }
  t.program = program;
  PL_TRY(sources, GetSources(m, "sources"));
  t.sources = std::move(sources);
  PL_TRY(cflags, GetStringsOr(m, "cflags"));
  t.cflags = std::move(cflags);
  PL_TRY(libs, GetStringsOr(m, "libs"));
  t.libs = std::move(libs);
  return t;
}

Result<ExpectSpec> ParseExpect(const YamlMap& root);

// A patch entry's own `expect:` and `semantic:`, validated like the scenario's.
Status ParsePatchChecks(const YamlMap& m, PatchSpec& p) {
  if (m.Has("expect")) {
    PL_TRY(expect, ParseExpect(m));
    p.expect = std::move(expect);
  }
  if (m.Has("semantic")) {
    PL_TRY(section, m.Map("semantic"));
    PL_TRY(check, emulator::ParseSemanticSection(section));
    p.semantic = std::move(check);
  }
  return {};
}

// `target_built`: the target is built from sources (a labstats target, patched by its pid).
Result<PatchSpec> ParsePatch(const YamlMap& m, bool target_built) {
  PL_CHECK(m.AllowOnly({"id", "seq", "module", "sources", "cflags", "functions", "references",
                        "replaces", "package", "pubkey", "processes", "expect", "semantic"}));
  PatchSpec p;
  p.where = YamlWhere(m.file(), m.node());
  PL_CHECK(ParsePatchChecks(m, p));
  PL_TRY(processes, m.GetOr<std::string>("processes", "program"));
  if (processes != "program" && processes != "all") {
    return std::unexpected(m.ErrorAt(
        "processes", fmt::format("'{}' must be 'program' (the target's processes) or 'all' (every "
                                 "process that maps the patched module)",
                                 processes)));
  }
  p.processes = processes == "all" ? PatchProcesses::kAll : PatchProcesses::kProgram;
  if (p.processes == PatchProcesses::kAll && target_built) {
    return std::unexpected(
        m.ErrorAt("processes",
                  "'all' is for a real application (a target without sources, measured from "
                  "outside); a target the lab builds is patched in its own process"));
  }
  PL_TRY(id, m.Get<std::string>("id"));
  if (!IsName(id)) return std::unexpected(m.ErrorAt("id", "must be letters, digits, - _ ."));
  p.id = id;
  PL_TRY(seq, m.GetOr<uint64_t>("seq", 1));
  if (seq == 0 || seq > UINT32_MAX) return std::unexpected(m.ErrorAt("seq", "must be 1 or more"));
  p.seq = static_cast<uint32_t>(seq);
  PL_TRY(module, m.GetOr<std::string>("module", ""));
  if (!module.empty() && module[0] != '/') {
    return std::unexpected(m.ErrorAt("module", "must be an absolute path of a shared library"));
  }
  p.module = module;
  if (m.Has("package") || m.Has("pubkey")) {
    PL_CHECK(internal::ParsePrebuiltPatch(m, p));
    return p;
  }
  PL_TRY(sources, GetSources(m, "sources"));
  p.sources = std::move(sources);
  PL_TRY(cflags, GetStringsOr(m, "cflags"));
  p.cflags = std::move(cflags);

  PL_TRY(functions, m.GetStrings("functions"));
  if (functions.empty())
    return std::unexpected(m.ErrorAt("functions", "must name at least one function"));
  YAML::Node fnode = m.Node("functions");
  for (size_t i = 0; i < functions.size(); ++i) {
    const std::string& f = functions[i];
    YAML::Node at = fnode.IsSequence() ? fnode[i] : fnode;
    size_t eq = f.find('=');
    FunctionMap fm{f.substr(0, eq), eq == std::string::npos ? f.substr(0, eq) : f.substr(eq + 1)};
    if (!IsIdentifier(fm.old_name) || !IsIdentifier(fm.new_name)) {
      return std::unexpected(ItemError(
          m, at, "functions", fmt::format("'{}' must be OLD or OLD=NEW (symbol names)", f)));
    }
    p.functions.push_back(std::move(fm));
  }
  PL_TRY(refs, GetStringsOr(m, "references"));
  for (const auto& r : refs) {
    if (!IsIdentifier(r)) {
      return std::unexpected(m.ErrorAt("references", fmt::format("'{}' is not a symbol name", r)));
    }
  }
  p.references = std::move(refs);
  PL_TRY(replaces, m.GetOr<std::string>("replaces", ""));
  p.replaces = replaces;
  return p;
}

Result<std::vector<PatchSpec>> ParsePatches(const YamlMap& root, bool target_built) {
  if (!root.Has("patch"))
    return std::unexpected(root.ErrorAt("", "missing required field 'patch'"));
  YAML::Node node = root.Node("patch");
  std::vector<PatchSpec> out;
  if (node.IsMap()) {
    PL_TRY(m, YamlMap::Of(root.file(), node, "patch"));
    PL_TRY(p, ParsePatch(m, target_built));
    out.push_back(std::move(p));
  } else if (node.IsSequence() && node.size() > 0) {
    for (size_t i = 0; i < node.size(); ++i) {
      PL_TRY(m, YamlMap::Of(root.file(), node[i], fmt::format("patch[{}]", i)));
      PL_TRY(p, ParsePatch(m, target_built));
      out.push_back(std::move(p));
    }
  } else {
    return std::unexpected(
        root.ErrorAt("patch", "must be a mapping or a non-empty list of mappings"));
  }
  std::set<std::string> ids;
  for (const auto& p : out) {
    if (!ids.insert(p.id).second) {
      return std::unexpected(
          Error(ErrorCode::kParse, fmt::format("{}: patch: id '{}' appears twice", p.where, p.id)));
    }
  }
  return out;
}

Result<WorkloadSpec> ParseWorkload(const YamlMap& m, bool named, bool built_target) {
  PL_CHECK(m.AllowOnly(
      {"name", "command", "threads", "duration", "warmup", "service", "load", "check", "files"}));
  WorkloadSpec w;
  if (named) {
    PL_TRY(name, m.Get<std::string>("name"));
    w.name = name;
  } else {
    PL_TRY(name, m.GetOr<std::string>("name", "default"));
    w.name = name;
  }
  if (!IsName(w.name)) return std::unexpected(m.ErrorAt("name", "must be letters, digits, - _ ."));
  if (built_target) {
    for (const char* key : {"service", "load", "check", "files"}) {
      if (m.Has(key)) {
        return std::unexpected(
            m.ErrorAt(key,
                      "is for a target the lab does not build (one without target.sources); this "
                      "target reports its own work through labstats"));
      }
    }
    PL_TRY(command, m.GetStrings("command"));
    if (command.empty()) return std::unexpected(m.ErrorAt("command", "must not be empty"));
    w.command = std::move(command);
  } else {
    PL_CHECK(internal::ParseAppWorkload(m, w));
  }
  PL_TRY(threads, GetIntInRange(m, "threads", 1, 1, 256));
  w.threads = threads;
  PL_TRY(duration, GetDuration(m, "duration"));
  w.duration = duration;
  PL_TRY(warmup, GetDurationOr(m, "warmup", milliseconds(500)));
  w.warmup = warmup;
  return w;
}

Result<std::vector<WorkloadSpec>> ParseWorkloads(const YamlMap& root, bool built_target) {
  if (!root.Has("workload"))
    return std::unexpected(root.ErrorAt("", "missing required field 'workload'"));
  YAML::Node node = root.Node("workload");
  std::vector<WorkloadSpec> out;
  if (node.IsMap()) {
    PL_TRY(m, YamlMap::Of(root.file(), node, "workload"));
    PL_TRY(w, ParseWorkload(m, false, built_target));
    out.push_back(std::move(w));
  } else if (node.IsSequence() && node.size() > 0) {
    std::set<std::string> names;
    for (size_t i = 0; i < node.size(); ++i) {
      PL_TRY(m, YamlMap::Of(root.file(), node[i], fmt::format("workload[{}]", i)));
      PL_TRY(w, ParseWorkload(m, true, built_target));
      if (!names.insert(w.name).second) {
        return std::unexpected(
            m.ErrorAt("name", fmt::format("workload '{}' appears twice", w.name)));
      }
      out.push_back(std::move(w));
    }
  } else {
    return std::unexpected(
        root.ErrorAt("workload", "must be a mapping or a non-empty list of mappings"));
  }
  return out;
}

Result<MeasureSpec> ParseMeasure(const YamlMap& root) {
  MeasureSpec s;
  if (!root.Has("measure")) return s;
  PL_TRY(m, root.Map("measure"));
  PL_CHECK(m.AllowOnly({"window", "alternations", "max_alternations"}));
  PL_TRY(window, GetDurationOr(m, "window", s.window));
  if (window < milliseconds(100))
    return std::unexpected(m.ErrorAt("window", "must be at least 100ms"));
  s.window = window;
  PL_TRY(alternations, GetIntInRange(m, "alternations", s.alternations, 1, 100));
  s.alternations = alternations;
  // The default budget is never below an explicit `alternations`.
  PL_TRY(max_alternations,
         GetIntInRange(m, "max_alternations", std::max(s.max_alternations, alternations), 1, 200));
  if (max_alternations < alternations) {
    return std::unexpected(m.ErrorAt(
        "max_alternations", fmt::format("must be at least alternations ({})", alternations)));
  }
  s.max_alternations = max_alternations;
  return s;
}

Result<ApplySpec> ParseApply(const YamlMap& root) {
  ApplySpec s;
  if (!root.Has("apply")) return s;
  PL_TRY(m, root.Map("apply"));
  PL_CHECK(m.AllowOnly({"when", "repeat", "timeout"}));
  PL_TRY(when, m.GetOr<std::string>("when", "after-warmup"));
  if (when == "after-warmup") {
    s.when = ApplyWhen::kAfterWarmup;
  } else if (when == "at-start") {
    s.when = ApplyWhen::kAtStart;
  } else {
    return std::unexpected(
        m.ErrorAt("when", fmt::format("must be after-warmup or at-start, got '{}'", when)));
  }
  PL_TRY(repeat, GetIntInRange(m, "repeat", s.repeat, 1, 1000));
  s.repeat = repeat;
  PL_TRY(timeout, GetDurationOr(m, "timeout", s.timeout));
  s.timeout = timeout;
  return s;
}

Result<LimitsSpec> ParseLimits(const YamlMap& root) {
  LimitsSpec s;
  if (!root.Has("limits")) return s;
  PL_TRY(m, root.Map("limits"));
  PL_CHECK(m.AllowOnly({"cpu_overhead_pct", "mem_overhead_kib", "pause_us"}));
  PL_TRY(cpu, m.GetOr<double>("cpu_overhead_pct", 0.0));
  PL_TRY(mem, m.GetOr<double>("mem_overhead_kib", s.mem_overhead_kib));
  PL_TRY(pause, m.GetOr<double>("pause_us", s.pause_us));
  for (auto [key, v] :
       {std::pair{"cpu_overhead_pct", cpu}, {"mem_overhead_kib", mem}, {"pause_us", pause}}) {
    if (!(v >= 0) || !std::isfinite(v))
      return std::unexpected(m.ErrorAt(key, "must be a number >= 0"));
  }
  if (m.Has("cpu_overhead_pct")) s.cpu_overhead_pct = cpu;
  s.mem_overhead_kib = mem;
  s.pause_us = pause;
  return s;
}

Result<ExpectSpec> ParseExpect(const YamlMap& root) {
  PL_TRY(m, root.Map("expect"));
  PL_CHECK(
      m.AllowOnly({"verdict", "max_crashes", "overhead_flagged", "reason_contains", "semantic"}));
  ExpectSpec e;
  PL_TRY(verdict_name, m.Get<std::string>("verdict"));
  auto verdict = ParseVerdict(verdict_name);
  if (!verdict || *verdict == Verdict::kInfraError) {
    return std::unexpected(m.ErrorAt(
        "verdict", fmt::format("must be pass, fail or not-hotpatchable, got '{}'", verdict_name)));
  }
  e.verdict = *verdict;
  if (m.Has("max_crashes")) {
    PL_TRY(v, GetIntInRange(m, "max_crashes", 0, 0, 1000000));
    e.max_crashes = v;
  }
  if (m.Has("overhead_flagged")) {
    PL_TRY(v, m.Get<bool>("overhead_flagged"));
    e.overhead_flagged = v;
  }
  if (m.Has("reason_contains")) {
    PL_TRY(v, m.Get<std::string>("reason_contains"));
    e.reason_contains = v;
  }
  if (m.Has("semantic")) {
    PL_TRY(v, m.Get<std::string>("semantic"));
    if (v != "pass" && v != "fail" && v != "skipped") {
      return std::unexpected(m.ErrorAt("semantic", "must be pass, fail or skipped"));
    }
    e.semantic = v;
  }
  return e;
}

Result<Scenario> ParseScenarioDocument(const YAML::Node& doc, const fs::path& file) {
  PL_TRY(root, YamlMap::Of(file.string(), doc, ""));
  PL_CHECK(root.AllowOnly({"name", "description", "target", "patch", "images", "cpus", "vcpus",
                           "memory_mib", "workload", "measure", "apply", "limits", "semantic",
                           "expect", "timeout"}));
  Scenario s;
  s.file = file;
  s.dir = file.parent_path().empty() ? fs::path(".") : file.parent_path();
  // The timeout is checked first: a scenario without one must never run.
  if (!root.Has("timeout")) {
    return std::unexpected(
        root.ErrorAt("", "missing required field 'timeout' (every scenario needs one)"));
  }
  PL_TRY(timeout, GetDuration(root, "timeout"));
  if (timeout < milliseconds(1000))
    return std::unexpected(root.ErrorAt("timeout", "must be at least 1s"));
  s.timeout = timeout;
  PL_TRY(name, root.Get<std::string>("name"));
  if (!IsName(name)) return std::unexpected(root.ErrorAt("name", "must be letters, digits, - _ ."));
  s.name = name;
  PL_TRY(description, root.GetOr<std::string>("description", ""));
  s.description = description;
  PL_TRY(target, ParseTarget(root));
  s.target = std::move(target);
  PL_TRY(patches, ParsePatches(root, s.target.Built()));
  s.patches = std::move(patches);
  PL_TRY(images, GetStringsOr(root, "images"));
  s.images = std::move(images);
  PL_TRY(cpus, GetStringsOr(root, "cpus"));
  s.cpus = std::move(cpus);
  PL_TRY(vcpus, GetIntInRange(root, "vcpus", s.vcpus, 1, 64));
  s.vcpus = vcpus;
  PL_TRY(memory, GetIntInRange(root, "memory_mib", s.memory_mib, 64, 65536));
  s.memory_mib = memory;
  PL_TRY(workloads, ParseWorkloads(root, s.target.Built()));
  s.workloads = std::move(workloads);
  PL_TRY(measure, ParseMeasure(root));
  s.measure = measure;
  PL_TRY(apply, ParseApply(root));
  s.apply = apply;
  PL_TRY(limits, ParseLimits(root));
  s.limits = limits;
  if (root.Has("semantic")) {
    PL_TRY(section, root.Map("semantic"));
    PL_TRY(check, emulator::ParseSemanticSection(section));
    s.semantic = std::move(check);
  }
  PL_TRY(expect, ParseExpect(root));
  s.expect = std::move(expect);

  // Cross-field checks: what the runner would only find out in a VM.
  for (const auto& w : s.workloads) {
    milliseconds needed = w.warmup + s.measure.window * (2 * s.measure.alternations + 1);
    if (w.duration < needed) {
      YAML::Node wn = root.Node("workload");
      return std::unexpected(Error(
          ErrorCode::kParse,
          fmt::format(
              "{}: workload '{}': duration {}ms is shorter than warmup + (2 x alternations + 1) "
              "windows = {}ms",
              YamlWhere(file.string(), wn), w.name, w.duration.count(), needed.count())));
    }
    if (w.duration >= s.timeout) {
      return std::unexpected(
          root.ErrorAt("timeout", fmt::format("{}ms must be longer than workload '{}' ({}ms)",
                                              s.timeout.count(), w.name, w.duration.count())));
    }
  }
  for (const auto& p : s.patches) {
    for (const auto& src : p.sources) {
      if (!fs::exists(s.dir / src)) {
        return std::unexpected(
            Error(ErrorCode::kParse, fmt::format("{}: patch '{}': source {} does not exist",
                                                 p.where, p.id, (s.dir / src).string())));
      }
    }
  }
  if (auto st = CheckAppFiles(s, root); !st) return std::unexpected(st.error());
  for (const auto& src : s.target.sources) {
    if (!fs::exists(s.dir / src)) {
      return std::unexpected(
          root.ErrorAt("target", fmt::format("source {} does not exist", (s.dir / src).string())));
    }
  }
  return s;
}

Result<Scenario> ParseScenarioFile(const fs::path& file) {
  PL_TRY(doc, LoadYamlFile(file.string()));
  return ParseScenarioDocument(doc, file);
}

}  // namespace

Result<Scenario> ParseScenario(const std::string& text, const fs::path& file) {
  PL_TRY(doc, LoadYamlString(text, file.string()));
  return ParseScenarioDocument(doc, file);
}

std::string_view VerdictName(Verdict verdict) {
  switch (verdict) {
    case Verdict::kPass:
      return "pass";
    case Verdict::kFail:
      return "fail";
    case Verdict::kNotHotpatchable:
      return "not-hotpatchable";
    case Verdict::kInfraError:
      return "infra-error";
  }
  std::abort();
}

Result<Verdict> ParseVerdict(std::string_view name) {
  for (Verdict v :
       {Verdict::kPass, Verdict::kFail, Verdict::kNotHotpatchable, Verdict::kInfraError}) {
    if (VerdictName(v) == name) return v;
  }
  return Fail(ErrorCode::kInvalidArgument, "unknown verdict '{}'", name);
}

Result<milliseconds> ParseDuration(std::string_view text) {
  std::string s(text);
  if (s.empty()) return Fail(ErrorCode::kInvalidArgument, "empty duration");
  const char* begin = s.c_str();
  char* end = nullptr;
  double value = std::strtod(begin, &end);
  if (end == begin || !(value >= 0) || !std::isfinite(value) || s[0] == '-' || s[0] == '+') {
    return Fail(ErrorCode::kInvalidArgument, "'{}' is not a duration (e.g. 500ms, 10s, 2m)", text);
  }
  std::string_view unit(end);
  double ms;
  if (unit.empty() || unit == "s") {
    ms = value * 1000;
  } else if (unit == "ms") {
    ms = value;
  } else if (unit == "m" || unit == "min") {
    ms = value * 60000;
  } else {
    return Fail(ErrorCode::kInvalidArgument, "'{}' is not a duration (units: ms, s, m)", text);
  }
  if (ms > 7 * 24 * 3600e3)
    return Fail(ErrorCode::kInvalidArgument, "duration '{}' is too long", text);
  return milliseconds(static_cast<int64_t>(std::llround(ms)));
}

Result<Scenario> LoadScenario(const fs::path& path) {
  std::error_code ec;
  fs::path file = fs::is_directory(path, ec) ? path / "scenario.yaml" : path;
  if (!fs::exists(file, ec))
    return Fail(ErrorCode::kNotFound, "{}: no such scenario file", file.string());
  return ParseScenarioFile(file);
}

Result<std::vector<Scenario>> LoadScenarios(const std::vector<std::string>& args) {
  if (args.empty()) return Fail(ErrorCode::kInvalidArgument, "no scenario given");
  std::vector<Scenario> out;
  std::set<std::string> names;
  auto add = [&](const fs::path& file) -> Status {
    PL_TRY(s, ParseScenarioFile(file));
    if (!names.insert(s.name).second) {
      return Fail(ErrorCode::kParse, "{}: scenario name '{}' is used by another scenario",
                  file.string(), s.name);
    }
    out.push_back(std::move(s));
    return {};
  };
  for (const auto& arg : args) {
    fs::path p(arg);
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) {
      PL_CHECK(add(p));
    } else if (fs::is_directory(p, ec)) {
      if (fs::exists(p / "scenario.yaml")) {
        PL_CHECK(add(p / "scenario.yaml"));
        continue;
      }
      std::vector<fs::path> found;
      for (const auto& entry : fs::directory_iterator(p, ec)) {
        if (entry.is_directory() && fs::exists(entry.path() / "scenario.yaml")) {
          found.push_back(entry.path() / "scenario.yaml");
        }
      }
      if (ec) return Fail(ErrorCode::kIo, "{}: cannot list: {}", arg, ec.message());
      if (found.empty()) return Fail(ErrorCode::kNotFound, "{}: holds no scenario.yaml", arg);
      std::sort(found.begin(), found.end());
      for (const auto& f : found) PL_CHECK(add(f));
    } else {
      return Fail(ErrorCode::kNotFound, "{}: no such scenario file or folder", arg);
    }
  }
  return out;
}

const ExpectSpec& ExpectOf(const Scenario& scenario, const PatchSpec& patch) {
  return patch.expect ? *patch.expect : scenario.expect;
}

const emulator::CheckOptions* SemanticOf(const Scenario& scenario, const PatchSpec& patch) {
  if (patch.semantic) return &*patch.semantic;
  return scenario.semantic ? &*scenario.semantic : nullptr;
}

}  // namespace patchlab::harness

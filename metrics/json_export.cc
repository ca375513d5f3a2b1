#include "metrics/json_export.h"

#include <ctime>

#include "metrics/cpu_cross_check.h"

namespace patchlab::metrics {

using nlohmann::json;

nlohmann::json ToJson(const AppSummary& a) {
  return {{"application", a.application},
          {"outcome", a.Word()},
          {"cells", a.cells},
          {"pass", a.pass},
          {"fail", a.fail},
          {"not_hotpatchable", a.not_hotpatchable},
          {"infra_error", a.infra_error},
          {"crashes", a.crashes}};
}

std::string IsoTime(int64_t unix_seconds) {
  if (unix_seconds == 0) return "";
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

namespace {
template <typename T>
json Opt(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}
json Key(const CellKey& k) {
  return {{"scenario", k.scenario},
          {"patch_id", k.patch_id},
          {"image", k.image},
          {"cpu", k.cpu},
          {"workload", k.workload}};
}
}  // namespace

json ToJson(const CellResult& c) {
  json j = Key(c.key);
  j["run_id"] = c.run_id;
  j["patch_seq"] = c.patch_seq;
  j["host"] = c.host;
  j["application"] = c.application;
  j["verdict"] = VerdictName(c.verdict);
  j["met_expectation"] = Opt(c.met_expectation);
  j["apply_result"] = ApplyResultName(c.apply);
  j["apply_reason"] = c.apply_reason;
  json crashes = json::object();
  for (const auto& [kind, count] : c.crashes) crashes[std::string(CrashKindName(kind))] = count;
  j["crashes"] = crashes;
  j["crashes_total"] = c.TotalCrashes();
  j["pause_us"] = c.pause_us;
  j["pause_median_us"] = Opt(c.pause_median_us);
  if (c.cpu_overhead_pct) {
    j["cpu_overhead_pct"] = {{"median", c.cpu_overhead_pct->value},
                             {"ci_low", c.cpu_overhead_pct->low},
                             {"ci_high", c.cpu_overhead_pct->high},
                             {"samples", c.cpu_overhead_pct->samples},
                             {"coverage", c.cpu_overhead_pct->coverage}};
  } else {
    j["cpu_overhead_pct"] = nullptr;
  }
  j["cpu_clock"] = CpuClockName(c.cpu_clock);
  // The figure of the other kind beside the judged one, and what the
  // cross-check of the two says (metrics/cpu_cross_check.h).
  if (c.cpu_reference_pct) {
    j["cpu_reference_pct"] = {{"median", c.cpu_reference_pct->value},
                              {"ci_low", c.cpu_reference_pct->low},
                              {"ci_high", c.cpu_reference_pct->high},
                              {"samples", c.cpu_reference_pct->samples}};
    j["cpu_reference_clock"] = CpuClockName(c.cpu_reference_clock);
  } else {
    j["cpu_reference_pct"] = nullptr;
  }
  j["cpu_cross_check"] = CpuCrossCheckOf(c) ? json(CrossCheckName(*CpuCrossCheckOf(c))) : json();
  j["cpu_outcome"] =
      c.cpu_outcome ? nlohmann::json(OverheadOutcomeName(*c.cpu_outcome)) : nlohmann::json();
  j["cpu_limit_pct"] = Opt(c.cpu_limit_pct);
  j["cpu_scenario_limit_pct"] = Opt(c.cpu_scenario_limit_pct);
  if (c.host_load) {
    j["host_load"] = {{"load1", c.host_load->load1},
                      {"busy_pct", c.host_load->busy_pct},
                      {"steal_pct", c.host_load->steal_pct}};
  }
  j["mem_overhead_kib"] = Opt(c.mem_overhead_kib);
  j["patch_mapped_kib"] = Opt(c.patch_mapped_kib);
  j["island_kib"] = Opt(c.island_kib);
  j["semantic"] = SemanticVerdictName(c.semantic);
  j["duration_ms"] = c.duration_ms;
  j["artefacts"] = c.artefacts;
  j["reasons"] = c.reasons;
  j["recorded_at"] = IsoTime(c.recorded_at);
  return j;
}

json ToJson(const RunInfo& r) {
  return {{"id", r.id},
          {"started_at", IsoTime(r.started_at)},
          {"finished_at", IsoTime(r.finished_at)},
          {"host", r.host},
          {"version", r.version},
          {"git_revision", r.git_revision},
          {"status", RunStatusName(r.status)},
          {"label", r.label},
          {"args", r.args},
          {"note", r.note},
          {"pid", r.pid},
          {"boot_id", r.boot_id},
          {"pid_ns", r.pid_ns},
          {"pid_start", r.pid_start}};
}

json ToJson(const PatchInfo& p) {
  return {{"id", p.id},
          {"seq", p.seq},
          {"target_build_id", p.target_build_id},
          {"package_hash", p.package_hash},
          {"signer", p.signer}};
}

json ToJson(const ImageInfo& i) {
  return {{"name", i.name},
          {"kernel_version", i.kernel_version},
          {"packages", i.packages},
          {"content_hash", i.content_hash}};
}

json ToJson(const SemanticFinding& f) {
  return {{"run_id", f.run_id},
          {"scenario", f.scenario},
          {"patch_id", f.patch_id},
          {"function", f.function},
          {"kind", f.kind},
          {"input", f.input},
          {"old_result", f.old_result},
          {"new_result", f.new_result},
          {"expected", f.expected},
          {"detail", f.detail}};
}

json ToJson(const GateDecision& d) {
  json failures = json::array();
  for (const GateFailure& f : d.failures) {
    json one = Key(f.cell);
    one["rule"] = f.rule;
    one["message"] = f.message;
    one["run_id"] = f.run_id;
    failures.push_back(one);
  }
  json missing = json::array();
  for (const MissingData& m : d.missing) {
    json one = {{"what", m.what}, {"noisy", m.noisy}};
    if (m.cell) one["cell"] = Key(*m.cell);
    missing.push_back(one);
  }
  return {{"patch_id", d.patch_id},
          {"ring", d.ring},
          {"outcome", GateOutcomeName(d.outcome)},
          {"exit_code", d.ExitCode()},
          {"failures", failures},
          {"missing", missing},
          {"cells_judged", d.cells.size()},
          {"cpu_figures", d.cpu_figures}};
}

}  // namespace patchlab::metrics

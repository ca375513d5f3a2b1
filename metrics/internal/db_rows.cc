#include "metrics/internal/db_rows.h"

#include <nlohmann/json.hpp>

namespace patchlab::metrics::internal {

Status RequireRun(Connection& conn, int64_t run) {
  auto stmt = conn.Prepare("SELECT 1 FROM runs WHERE id=?");
  if (!stmt) return std::unexpected(stmt.error());
  stmt->Bind(1, run);
  auto row = stmt->Step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return Fail(ErrorCode::kNotFound, "{}: no run {}", conn.path().string(), run);
  return {};
}

Status RequireRow(Connection& conn, std::string_view table, std::string_view column,
                  std::string_view value, std::string_view what) {
  auto stmt = conn.Prepare(fmt::format("SELECT 1 FROM {} WHERE {}=?", table, column));
  if (!stmt) return std::unexpected(stmt.error());
  stmt->Bind(1, value);
  auto row = stmt->Step();
  if (!row) return std::unexpected(row.error());
  if (!*row) {
    return Fail(ErrorCode::kNotFound, "{}: unknown {} '{}' (record it before its results)",
                conn.path().string(), what, value);
  }
  return {};
}

std::string CellColumns(int version) {
  std::string columns =
      "c.run_id, c.scenario, c.patch_id, c.patch_seq, c.image, c.cpu, c.workload, c.host, "
      "c.verdict, c.met_expectation, c.apply_result, c.apply_reason, c.pause_us, "
      "c.pause_median_us, c.cpu_overhead_pct, c.cpu_ci_low, c.cpu_ci_high, c.cpu_samples, "
      "c.mem_overhead_kib, c.semantic, c.duration_ms, c.artefacts, c.reasons, c.recorded_at, "
      "(SELECT group_concat(kind || '=' || count, ',') FROM cell_crashes WHERE cell_id = c.id), ";
  // Columns 25..40: the figures of schema 4; 41: the application (schema 4).
  if (version >= 4) {
    return columns +
           "c.cpu_clock, c.cpu_coverage, c.cpu_outcome, c.cpu_limit_pct, "
           "c.cpu_scenario_limit_pct, c.cpu_windows, c.cpu_ref_pct, c.cpu_ref_low, c.cpu_ref_high, "
           "c.cpu_ref_samples, c.cpu_ref_clock, c.host_load1, c.host_busy_pct, c.host_steal_pct, "
           "c.patch_mapped_kib, c.island_kib, c.application";
  }
  return columns +
         "'', NULL, NULL, NULL, NULL, '[]', NULL, NULL, NULL, NULL, '', NULL, NULL, NULL, NULL, "
         "NULL, ''";
}

namespace {

template <typename T>
Result<T> Parsed(Result<T> r, const std::filesystem::path& file, const CellKey& key) {
  if (!r) {
    return std::unexpected(
        std::move(r.error()).AddContext(fmt::format("{}: cell {}", file.string(), key.ToString())));
  }
  return r;
}

std::optional<Estimate> ReadEstimate(const Statement& s, int value, int low, int high,
                                     int samples) {
  auto v = s.OptDouble(value);
  if (!v) return std::nullopt;
  return Estimate{*v, s.OptDouble(low).value_or(*v), s.OptDouble(high).value_or(*v),
                  static_cast<size_t>(s.OptInt(samples).value_or(0))};
}

std::vector<WindowSample> ReadWindows(const std::string& text) {
  std::vector<WindowSample> out;
  auto windows = nlohmann::json::parse(text, nullptr, false);
  if (!windows.is_array()) return out;
  for (const auto& w : windows) {
    if (!w.is_object()) continue;
    out.push_back({w.value("patched", false), w.value("cost", 0.0), w.value("work", 0.0)});
  }
  return out;
}

// The schema-4 figures (columns 25..40) of a cell row.
Status ReadFigures(const Statement& s, const std::filesystem::path& file, CellResult& c) {
  auto clock = Parsed(ParseCpuClock(s.Text(25)), file, c.key);
  if (!clock) return std::unexpected(clock.error());
  c.cpu_clock = *clock;
  if (c.cpu_overhead_pct) c.cpu_overhead_pct->coverage = s.OptDouble(26).value_or(0);
  if (!s.IsNull(27)) {
    auto o = Parsed(ParseOverheadOutcome(s.Text(27)), file, c.key);
    if (!o) return std::unexpected(o.error());
    c.cpu_outcome = *o;
  }
  c.cpu_limit_pct = s.OptDouble(28);
  c.cpu_scenario_limit_pct = s.OptDouble(29);
  c.cpu_windows = ReadWindows(s.Text(30));
  c.cpu_reference_pct = ReadEstimate(s, 31, 32, 33, 34);
  auto ref_clock = Parsed(ParseCpuClock(s.Text(35)), file, c.key);
  if (!ref_clock) return std::unexpected(ref_clock.error());
  c.cpu_reference_clock = *ref_clock;
  if (auto load = s.OptDouble(36)) {
    c.host_load = HostLoad{*load, s.OptDouble(37).value_or(0), s.OptDouble(38).value_or(0)};
  }
  c.patch_mapped_kib = s.OptDouble(39);
  c.island_kib = s.OptDouble(40);
  return {};
}

}  // namespace

Result<CellResult> ReadCell(const Statement& s, const std::filesystem::path& file) {
  CellResult c;
  c.run_id = s.Int(0);
  c.key = CellKey{s.Text(1), s.Text(2), s.Text(4), s.Text(5), s.Text(6)};
  c.patch_seq = static_cast<int>(s.Int(3));
  c.host = s.Text(7);
  auto verdict = Parsed(ParseVerdict(s.Text(8)), file, c.key);
  if (!verdict) return std::unexpected(verdict.error());
  c.verdict = *verdict;
  if (auto m = s.OptInt(9)) c.met_expectation = *m != 0;
  auto apply = Parsed(ParseApplyResult(s.Text(10)), file, c.key);
  if (!apply) return std::unexpected(apply.error());
  c.apply = *apply;
  c.apply_reason = s.Text(11);
  auto pauses = nlohmann::json::parse(s.Text(12), nullptr, false);
  if (pauses.is_array()) {
    for (const auto& p : pauses) {
      if (p.is_number()) c.pause_us.push_back(p.get<double>());
    }
  }
  c.pause_median_us = s.OptDouble(13);
  c.cpu_overhead_pct = ReadEstimate(s, 14, 15, 16, 17);
  c.mem_overhead_kib = s.OptDouble(18);
  auto semantic = Parsed(ParseSemanticVerdict(s.Text(19)), file, c.key);
  if (!semantic) return std::unexpected(semantic.error());
  c.semantic = *semantic;
  c.duration_ms = s.Int(20);
  c.artefacts = s.Text(21);
  auto reasons = nlohmann::json::parse(s.Text(22), nullptr, false);
  if (reasons.is_array()) {
    for (const auto& r : reasons) {
      if (r.is_string()) c.reasons.push_back(r.get<std::string>());
    }
  }
  c.recorded_at = s.Int(23);
  c.application = s.Text(41);
  std::string crashes = s.Text(24);
  size_t pos = 0;
  while (pos < crashes.size()) {
    size_t comma = crashes.find(',', pos);
    std::string item =
        crashes.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    pos = comma == std::string::npos ? crashes.size() : comma + 1;
    size_t eq = item.find('=');
    if (eq == std::string::npos) continue;
    auto kind = Parsed(ParseCrashKind(item.substr(0, eq)), file, c.key);
    if (!kind) return std::unexpected(kind.error());
    c.crashes[*kind] = std::stoi(item.substr(eq + 1));
  }
  if (auto f = ReadFigures(s, file, c); !f) return std::unexpected(f.error());
  return c;
}

std::string RunColumns(int version) {
  std::string columns =
      "id, started_at, finished_at, host, version, git_revision, status, label, args, note, pid";
  return columns + (version >= 3 ? ", boot_id, pid_ns, pid_start" : ", '', '', 0");
}

Result<RunInfo> ReadRun(const Statement& s, const std::filesystem::path& file) {
  RunInfo r;
  r.id = s.Int(0);
  r.started_at = s.Int(1);
  r.finished_at = s.Int(2);
  r.host = s.Text(3);
  r.version = s.Text(4);
  r.git_revision = s.Text(5);
  auto status = ParseRunStatus(s.Text(6));
  if (!status) {
    return std::unexpected(
        std::move(status.error()).AddContext(fmt::format("{}: run {}", file.string(), r.id)));
  }
  r.status = *status;
  r.label = s.Text(7);
  r.args = s.Text(8);
  r.note = s.Text(9);
  r.pid = static_cast<int>(s.Int(10));
  r.boot_id = s.Text(11);
  r.pid_ns = s.Text(12);
  r.pid_start = s.Int(13);
  return r;
}

}  // namespace patchlab::metrics::internal

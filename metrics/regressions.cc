#include "metrics/regressions.h"

#include <map>
#include <set>
#include <tuple>

namespace patchlab::metrics {
namespace {

std::string Interval(const Estimate& e) {
  return fmt::format("{:.2f}% [{:.2f}, {:.2f}]", e.value, e.low, e.high);
}

void CompareCell(const CellResult& old_cell, const CellResult& new_cell,
                 std::vector<Regression>& out) {
  const CellKey& key = new_cell.key;
  size_t before = out.size();
  for (const auto& [kind, count] : new_cell.crashes) {
    auto it = old_cell.crashes.find(kind);
    int was = it == old_cell.crashes.end() ? 0 : it->second;
    if (count > was) {
      out.push_back(Regression{key, "new-crash",
                               fmt::format("{} {} -> {}", CrashKindName(kind), was, count)});
    }
  }
  if (old_cell.semantic != SemanticVerdict::kFail && new_cell.semantic == SemanticVerdict::kFail) {
    out.push_back(Regression{
        key, "new-semantic-divergence",
        fmt::format("semantic check {} -> fail", SemanticVerdictName(old_cell.semantic))});
  }
  if (old_cell.apply == ApplyResult::kApplied && new_cell.apply != ApplyResult::kApplied) {
    out.push_back(
        Regression{key, "stopped-applying",
                   fmt::format("applied -> {}{}", ApplyResultName(new_cell.apply),
                               new_cell.apply_reason.empty() ? "" : ": " + new_cell.apply_reason)});
  }
  if (old_cell.cpu_overhead_pct && new_cell.cpu_overhead_pct &&
      new_cell.cpu_overhead_pct->low > old_cell.cpu_overhead_pct->high) {
    out.push_back(
        Regression{key, "overhead-grew",
                   fmt::format("CPU overhead {} -> {}", Interval(*old_cell.cpu_overhead_pct),
                               Interval(*new_cell.cpu_overhead_pct))});
  }
  if (out.size() == before && old_cell.verdict == Verdict::kPass &&
      new_cell.verdict != Verdict::kPass) {
    std::string why;
    for (const auto& r : new_cell.reasons) why += (why.empty() ? "" : "; ") + r;
    out.push_back(Regression{
        key, "verdict-worse",
        fmt::format("pass -> {}{}", VerdictName(new_cell.verdict), why.empty() ? "" : ": " + why)});
  }
}

using FindingKey = std::tuple<std::string, std::string, std::string, std::string, std::string>;
FindingKey KeyOf(const SemanticFinding& f) {
  return {f.scenario, f.patch_id, f.function, f.kind, f.input};
}

}  // namespace

Result<RegressionReport> FindRegressions(CompatDb& db, int64_t baseline, int64_t run) {
  for (int64_t id : {baseline, run}) {
    if (auto r = db.GetRun(id); !r) return std::unexpected(r.error());
  }
  auto old_cells = db.CellsOfRun(baseline);
  if (!old_cells) return std::unexpected(old_cells.error());
  auto new_cells = db.CellsOfRun(run);
  if (!new_cells) return std::unexpected(new_cells.error());

  RegressionReport report;
  report.baseline_run = baseline;
  report.run = run;
  std::map<CellKey, const CellResult*> before;
  for (const CellResult& c : *old_cells) before[c.key] = &c;
  std::set<CellKey> seen;
  for (const CellResult& now : *new_cells) {
    seen.insert(now.key);
    auto it = before.find(now.key);
    if (it == before.end()) {
      report.notes.push_back(
          fmt::format("new cell {} ({})", now.key.ToString(), VerdictName(now.verdict)));
      continue;
    }
    const CellResult& was = *it->second;
    if (now.verdict == Verdict::kInfraError || was.verdict == Verdict::kInfraError) {
      report.notes.push_back(fmt::format("{}: not comparable (infra error in run {})",
                                         now.key.ToString(),
                                         now.verdict == Verdict::kInfraError ? run : baseline));
      continue;
    }
    ++report.cells_compared;
    CompareCell(was, now, report.regressions);
  }
  for (const auto& [key, cell] : before) {
    if (!seen.contains(key))
      report.notes.push_back(
          fmt::format("{}: measured in run {} but not in run {}", key.ToString(), baseline, run));
  }

  // Findings the checker did not report before (and that are not the fix itself).
  auto old_findings = db.Findings(baseline);
  if (!old_findings) return std::unexpected(old_findings.error());
  auto new_findings = db.Findings(run);
  if (!new_findings) return std::unexpected(new_findings.error());
  std::set<FindingKey> known;
  for (const SemanticFinding& f : *old_findings) known.insert(KeyOf(f));
  std::set<std::string> flagged;  // one regression per scenario/patch already flagged by verdict
  for (const Regression& r : report.regressions) {
    if (r.kind == "new-semantic-divergence")
      flagged.insert(r.cell.scenario + "/" + r.cell.patch_id);
  }
  for (const SemanticFinding& f : *new_findings) {
    if (f.expected || known.contains(KeyOf(f))) continue;
    if (flagged.contains(f.scenario + "/" + f.patch_id)) continue;
    report.regressions.push_back(
        Regression{CellKey{f.scenario, f.patch_id, "*", "*", "*"}, "new-semantic-divergence",
                   fmt::format("{}: new {} divergence on input {}: old {} new {}", f.function,
                               f.kind, f.input, f.old_result, f.new_result)});
  }
  return report;
}

std::string RegressionReport::Explain() const {
  std::string out =
      regressions.empty()
          ? fmt::format("no regression: run {} against run {} ({} cells compared)\n", run,
                        baseline_run, cells_compared)
          : fmt::format("{} regression(s): run {} against run {} ({} cells compared)\n",
                        regressions.size(), run, baseline_run, cells_compared);
  for (const Regression& r : regressions) {
    out += fmt::format("  regression: {} [{}]: {}\n", r.cell.ToString(), r.kind, r.message);
  }
  for (const std::string& n : notes) out += fmt::format("  note: {}\n", n);
  return out;
}

}  // namespace patchlab::metrics

// Gathering a report's data, and the machine formats: JSON, JUnit XML,
// Markdown and OpenMetrics. The HTML report is in report_html.cc.
#include "metrics/report.h"

#include <ctime>
#include <map>
#include <set>

#include "metrics/app_summary.h"
#include "metrics/internal/escape.h"
#include "metrics/json_export.h"

namespace patchlab::metrics {

using internal::HtmlEscape;
using internal::MarkdownCell;
using internal::PromLabelEscape;
using internal::XmlEscape;

namespace {

Status FillPatchesAndImages(CompatDb& db, ReportData& data) {
  std::set<std::string> patch_ids, image_names;
  for (const CellResult& c : data.cells) {
    patch_ids.insert(c.key.patch_id);
    image_names.insert(c.key.image);
  }
  for (const std::string& id : patch_ids) {
    auto p = db.GetPatch(id);
    if (!p) return std::unexpected(p.error());
    data.patches.push_back(p->value_or(PatchInfo{.id = id}));
  }
  for (const std::string& name : image_names) {
    auto i = db.GetImage(name);
    if (!i) return std::unexpected(i.error());
    data.images.push_back(i->value_or(ImageInfo{.name = name}));
  }
  return {};
}

std::string Figure(const std::optional<double>& v, const char* format) {
  return v ? fmt::format(fmt::runtime(format), *v) : "n/a";
}

// PSS growth in MiB with the patch's own bytes after it, for table cells.
std::string MemoryFigure(const CellResult& c) {
  std::string pss =
      Figure(c.mem_overhead_kib ? std::optional<double>(*c.mem_overhead_kib / 1024) : std::nullopt,
             "{:.2f}");
  std::string note = PatchMemoryNote(c);
  return note.empty() ? pss : fmt::format("{} ({})", pss, note);
}

std::string CellName(const CellKey& k) {
  return fmt::format("{} x {} x {}", k.image, k.cpu, k.workload);
}

// Everything a test-oriented report says about a failed cell, one reason per line.
std::string FailureText(const CellResult& cell, const Policy& policy) {
  std::vector<GateFailure> failures;
  std::vector<MissingData> missing;
  JudgeCell(cell, policy, failures, missing);
  std::string out;
  for (const GateFailure& f : failures) out += fmt::format("{}: {}\n", f.rule, f.message);
  for (const std::string& r : cell.reasons) out += fmt::format("reason: {}\n", r);
  return out;
}

}  // namespace

std::string_view ReportFormatName(ReportFormat f) {
  switch (f) {
    case ReportFormat::kHtml:
      return "html";
    case ReportFormat::kJunit:
      return "junit";
    case ReportFormat::kMarkdown:
      return "md";
    case ReportFormat::kJson:
      return "json";
    case ReportFormat::kOpenMetrics:
      return "openmetrics";
  }
  std::abort();
}

Result<ReportFormat> ParseReportFormat(std::string_view name) {
  for (ReportFormat f : {ReportFormat::kHtml, ReportFormat::kJunit, ReportFormat::kMarkdown,
                         ReportFormat::kJson, ReportFormat::kOpenMetrics}) {
    if (ReportFormatName(f) == name) return f;
  }
  if (name == "markdown") return ReportFormat::kMarkdown;
  return Fail(ErrorCode::kInvalidArgument,
              "unknown report format '{}' (html, junit, md, json, openmetrics)", name);
}

bool CellFailedForReport(const CellResult& cell, const Policy& policy) {
  if (cell.verdict == Verdict::kInfraError) return false;  // an error, not a failure
  if (cell.met_expectation) return !*cell.met_expectation;
  std::vector<GateFailure> failures;
  std::vector<MissingData> missing;
  JudgeCell(cell, policy, failures, missing);
  return !failures.empty();
}

Result<ReportData> GatherRunReport(CompatDb& db, int64_t run, const Policy& policy) {
  ReportData data;
  auto info = db.GetRun(run);
  if (!info) return std::unexpected(info.error());
  data.run = *info;
  data.title = fmt::format("run {}", run);
  data.policy = policy;
  data.generated_at = static_cast<int64_t>(std::time(nullptr));
  data.db_path = db.path().string();
  auto cells = db.CellsOfRun(run);
  if (!cells) return std::unexpected(cells.error());
  data.cells = std::move(*cells);
  auto missing = db.MissingCells(run);
  if (!missing) return std::unexpected(missing.error());
  auto findings = db.Findings(run);
  if (!findings) return std::unexpected(findings.error());
  data.findings = std::move(*findings);
  // A patch that was planned but has no cell at all still gets a verdict.
  for (const CellKey& k : *missing) {
    if (std::none_of(data.cells.begin(), data.cells.end(),
                     [&](const CellResult& c) { return c.key.patch_id == k.patch_id; })) {
      auto p = db.GetPatch(k.patch_id);
      if (!p) return std::unexpected(p.error());
      if (std::none_of(data.patches.begin(), data.patches.end(),
                       [&](const PatchInfo& x) { return x.id == k.patch_id; })) {
        data.patches.push_back(p->value_or(PatchInfo{.id = k.patch_id}));
      }
    }
  }
  if (auto s = FillPatchesAndImages(db, data); !s) return std::unexpected(s.error());
  std::sort(data.patches.begin(), data.patches.end(),
            [](const PatchInfo& a, const PatchInfo& b) { return a.id < b.id; });
  for (const PatchInfo& p : data.patches) {
    std::vector<CellResult> mine;
    for (const CellResult& c : data.cells) {
      if (c.key.patch_id == p.id) mine.push_back(c);
    }
    std::vector<CellKey> unrecorded;
    for (const CellKey& k : *missing) {
      if (k.patch_id == p.id) unrecorded.push_back(k);
    }
    data.verdicts.push_back(JudgeCells(p.id, std::move(mine), unrecorded, policy));
  }
  return data;
}

Result<ReportData> GatherPatchReport(CompatDb& db, const std::string& patch_id,
                                     const Policy& policy) {
  ReportData data;
  data.title = fmt::format("patch {}", patch_id);
  data.policy = policy;
  data.generated_at = static_cast<int64_t>(std::time(nullptr));
  data.db_path = db.path().string();
  auto decision = EvaluateGate(db, patch_id, policy);
  if (!decision) return std::unexpected(decision.error());
  data.cells = decision->cells;
  auto findings = db.Findings(0, patch_id);
  if (!findings) return std::unexpected(findings.error());
  data.findings = std::move(*findings);
  auto patch = db.GetPatch(patch_id);
  if (!patch) return std::unexpected(patch.error());
  if (!*patch && data.cells.empty()) {
    return Fail(ErrorCode::kNotFound, "{}: no patch '{}' recorded", db.path().string(), patch_id);
  }
  if (auto s = FillPatchesAndImages(db, data); !s) return std::unexpected(s.error());
  if (data.patches.empty()) data.patches.push_back(patch->value_or(PatchInfo{.id = patch_id}));
  data.verdicts.push_back(std::move(*decision));
  return data;
}

std::string RenderReport(const ReportData& data, ReportFormat format) {
  switch (format) {
    case ReportFormat::kHtml:
      return RenderHtml(data);
    case ReportFormat::kJunit:
      return RenderJunit(data);
    case ReportFormat::kMarkdown:
      return RenderMarkdown(data);
    case ReportFormat::kJson:
      return RenderJson(data);
    case ReportFormat::kOpenMetrics:
      return RenderOpenMetrics(data);
  }
  std::abort();
}

std::string RenderJson(const ReportData& data) {
  nlohmann::json j;
  j["title"] = data.title;
  j["generated_at"] = IsoTime(data.generated_at);
  j["database"] = data.db_path;
  j["policy"] = data.policy.source;
  j["run"] = data.run ? ToJson(*data.run) : nlohmann::json(nullptr);
  j["patches"] = nlohmann::json::array();
  for (size_t i = 0; i < data.patches.size(); ++i) {
    nlohmann::json p = ToJson(data.patches[i]);
    if (i < data.verdicts.size()) p["gate"] = ToJson(data.verdicts[i]);
    j["patches"].push_back(p);
  }
  // Every patch's cells by application, as `patchlab compat --json` has them.
  j["applications"] = nlohmann::json::array();
  for (const PatchAppSummary& p : SummarizeByPatchAndApplication(data.cells)) {
    nlohmann::json apps = nlohmann::json::array();
    for (const AppSummary& a : p.apps) apps.push_back(ToJson(a));
    j["applications"].push_back({{"patch_id", p.patch_id}, {"applications", apps}});
  }
  j["images"] = nlohmann::json::array();
  for (const ImageInfo& i : data.images) j["images"].push_back(ToJson(i));
  j["cells"] = nlohmann::json::array();
  for (const CellResult& c : data.cells) j["cells"].push_back(ToJson(c));
  j["findings"] = nlohmann::json::array();
  for (const SemanticFinding& f : data.findings) j["findings"].push_back(ToJson(f));
  return j.dump(2) + "\n";
}

std::string RenderJunit(const ReportData& data) {
  // One <testsuite> per scenario/patch, one <testcase> per cell.
  std::map<std::pair<std::string, std::string>, std::vector<const CellResult*>> suites;
  for (const CellResult& c : data.cells) suites[{c.key.scenario, c.key.patch_id}].push_back(&c);
  int tests = 0, failures = 0, errors = 0;
  double total_s = 0;
  std::string body;
  std::string timestamp = IsoTime(data.run ? data.run->started_at : data.generated_at);
  if (!timestamp.empty()) timestamp.pop_back();  // JUnit's timestamp carries no zone
  for (const auto& [name, cells] : suites) {
    int s_fail = 0, s_err = 0;
    double s_time = 0;
    std::string cases;
    for (const CellResult* c : cells) {
      double secs = static_cast<double>(c->duration_ms) / 1000.0;
      s_time += secs;
      cases += fmt::format("    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3f}\">\n",
                           XmlEscape(CellName(c->key)),
                           XmlEscape(fmt::format("patchlab.{}.{}", name.first, name.second)), secs);
      if (c->verdict == Verdict::kInfraError) {
        ++s_err;
        std::string why = c->reasons.empty() ? "infrastructure error" : c->reasons.front();
        cases += fmt::format("      <error message=\"{}\" type=\"infra-error\">{}</error>\n",
                             XmlEscape(why), XmlEscape(FailureText(*c, data.policy)));
      } else if (CellFailedForReport(*c, data.policy)) {
        ++s_fail;
        std::string text = FailureText(*c, data.policy);
        std::string first = text.substr(0, text.find('\n'));
        if (first.empty()) first = fmt::format("verdict {}", VerdictName(c->verdict));
        cases += fmt::format("      <failure message=\"{}\" type=\"{}\">{}</failure>\n",
                             XmlEscape(first), VerdictName(c->verdict), XmlEscape(text));
      }
      cases += fmt::format(
          "      <system-out>verdict: {}\napply: {} {}\ncrashes: {}\npause median us: {}\ncpu "
          "overhead %: {}\n"
          "memory overhead KiB: {}{}\nsemantic: {}\nartefacts: {}\n</system-out>\n",
          VerdictName(c->verdict), ApplyResultName(c->apply), XmlEscape(c->apply_reason),
          c->TotalCrashes(), Figure(c->pause_median_us, "{:.1f}"),
          Figure(c->cpu_overhead_pct ? std::optional<double>(c->cpu_overhead_pct->value)
                                     : std::nullopt,
                 "{:.2f}"),
          Figure(c->mem_overhead_kib, "{:.0f}"),
          PatchMemoryNote(*c).empty() ? "" : XmlEscape(" (" + PatchMemoryNote(*c) + ")"),
          SemanticVerdictName(c->semantic), XmlEscape(c->artefacts));
      cases += "    </testcase>\n";
    }
    tests += static_cast<int>(cells.size());
    failures += s_fail;
    errors += s_err;
    total_s += s_time;
    body += fmt::format(
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"0\" "
        "time=\"{:.3f}\" "
        "timestamp=\"{}\" hostname=\"{}\">\n",
        XmlEscape(name.first + "/" + name.second), cells.size(), s_fail, s_err, s_time, timestamp,
        XmlEscape(cells.front()->host.empty() ? "unknown" : cells.front()->host));
    body += cases;
    body += "  </testsuite>\n";
  }
  return fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<testsuites name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" "
      "time=\"{:.3f}\">\n{}</testsuites>\n",
      XmlEscape("patchlab " + data.title), tests, failures, errors, total_s, body);
}

std::string RenderMarkdown(const ReportData& data) {
  std::string out = fmt::format("## patchlab: {}\n\n", MarkdownCell(data.title));
  if (data.run) {
    out += fmt::format("Run {} on `{}` ({}), {}, patchlab {} ({}).\n\n", data.run->id,
                       MarkdownCell(data.run->host), IsoTime(data.run->started_at),
                       RunStatusName(data.run->status), MarkdownCell(data.run->version),
                       MarkdownCell(data.run->git_revision));
  }
  out += "| Patch | Gate | Cells | Failed | Missing |\n|---|---|---|---|---|\n";
  for (const GateDecision& d : data.verdicts) {
    const char* badge = d.outcome == GateOutcome::kShip     ? "✅ ship"
                        : d.outcome == GateOutcome::kReject ? "❌ reject"
                                                            : "⚠️ not enough data";
    out += fmt::format("| {} | {} | {} | {} | {} |\n", MarkdownCell(d.patch_id), badge,
                       d.cells.size(), d.failures.size(), d.missing.size());
  }
  out +=
      "\n| Scenario | Patch | Image | CPU | Workload | Verdict | Apply | Crashes | Pause (ms) | "
      "CPU overhead [99.9% interval], outcome, clock; rule | Mem (MiB) | Semantic |\n";
  out += "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const CellResult& c : data.cells) {
    std::string cpu = MarkdownCell(CpuFigureWithRule(c, data.policy));
    out += fmt::format(
        "| {} | {} | {} | {} | {} | {}{} | {} | {} | {} | {} | {} | {} |\n",
        MarkdownCell(c.key.scenario), MarkdownCell(c.key.patch_id), MarkdownCell(c.key.image),
        MarkdownCell(c.key.cpu), MarkdownCell(c.key.workload),
        CellFailedForReport(c, data.policy) ? "❌ " : "", VerdictName(c.verdict),
        ApplyResultName(c.apply), c.TotalCrashes(),
        Figure(c.pause_median_us ? std::optional<double>(*c.pause_median_us / 1000) : std::nullopt,
               "{:.2f}"),
        cpu, MarkdownCell(MemoryFigure(c)), SemanticVerdictName(c.semantic));
  }
  // What a release team reads first: "zlib fix: nginx ok, python3 ok, redis crashes".
  out += "\n**By application:**\n\n";
  for (const PatchAppSummary& p : SummarizeByPatchAndApplication(data.cells)) {
    out +=
        fmt::format("- {}: {}\n", MarkdownCell(p.patch_id), MarkdownCell(AppSummaryLine(p.apps)));
  }
  bool any = false;
  for (const GateDecision& d : data.verdicts) {
    for (const GateFailure& f : d.failures) {
      if (!any) out += "\n**Why not:**\n\n";
      any = true;
      out += fmt::format("- {} — `{}`: {}\n", MarkdownCell(f.cell.ToString()), f.rule,
                         MarkdownCell(f.message));
    }
    for (const MissingData& m : d.missing) {
      if (!any) out += "\n**Why not:**\n\n";
      any = true;
      out += fmt::format("- {}: {}: {}\n", MarkdownCell(d.patch_id), m.noisy ? "noisy" : "missing",
                         MarkdownCell(m.what));
    }
  }
  if (!data.findings.empty()) {
    out += fmt::format("\n{} semantic finding(s); see the HTML report.\n", data.findings.size());
  }
  return out;
}

std::string RenderOpenMetrics(const ReportData& data) {
  struct Family {
    const char* name;
    const char* help;
    std::string samples;
  };
  Family verdict{"patchlab_cell_verdict", "1 for the verdict of a matrix cell, by verdict name",
                 ""};
  Family crashes{"patchlab_cell_crashes", "crashes seen in a matrix cell, by kind", ""};
  Family pause{"patchlab_cell_pause_seconds", "median stop-the-world pause while applying", ""};
  Family pause_max{"patchlab_cell_pause_max_seconds", "longest stop-the-world pause while applying",
                   ""};
  Family cpu{"patchlab_cell_cpu_overhead_ratio",
             "CPU overhead patched vs unpatched (Hodges-Lehmann; 0.01 = 1%)", ""};
  Family cpu_low{"patchlab_cell_cpu_overhead_ci_low_ratio", "low end of the CPU overhead interval",
                 ""};
  Family cpu_high{"patchlab_cell_cpu_overhead_ci_high_ratio",
                  "high end of the CPU overhead interval", ""};
  Family mem{"patchlab_cell_memory_overhead_bytes", "memory growth per patched process", ""};
  Family duration{"patchlab_cell_duration_seconds", "wall time of the cell", ""};
  Family gate{"patchlab_patch_gate", "1 for the gate outcome of a patch, by outcome", ""};

  auto labels = [](const CellKey& k) {
    return fmt::format("scenario=\"{}\",patch=\"{}\",image=\"{}\",cpu=\"{}\",workload=\"{}\"",
                       PromLabelEscape(k.scenario), PromLabelEscape(k.patch_id),
                       PromLabelEscape(k.image), PromLabelEscape(k.cpu),
                       PromLabelEscape(k.workload));
  };
  auto sample = [](Family& f, const std::string& l, double v) {
    f.samples += fmt::format("{}{{{}}} {}\n", f.name, l, v);
  };
  for (const CellResult& c : data.cells) {
    std::string l = labels(c.key);
    for (Verdict v :
         {Verdict::kPass, Verdict::kFail, Verdict::kNotHotpatchable, Verdict::kInfraError}) {
      sample(verdict, fmt::format("{},verdict=\"{}\"", l, VerdictName(v)), c.verdict == v ? 1 : 0);
    }
    for (CrashKind k : kAllCrashKinds) {
      auto it = c.crashes.find(k);
      sample(crashes, fmt::format("{},kind=\"{}\"", l, CrashKindName(k)),
             it == c.crashes.end() ? 0 : it->second);
    }
    if (c.pause_median_us) sample(pause, l, *c.pause_median_us / 1e6);
    if (!c.pause_us.empty())
      sample(pause_max, l, *std::max_element(c.pause_us.begin(), c.pause_us.end()) / 1e6);
    if (c.cpu_overhead_pct) {
      sample(cpu, l, c.cpu_overhead_pct->value / 100);
      sample(cpu_low, l, c.cpu_overhead_pct->low / 100);
      sample(cpu_high, l, c.cpu_overhead_pct->high / 100);
    }
    if (c.mem_overhead_kib) sample(mem, l, *c.mem_overhead_kib * 1024);
    sample(duration, l, static_cast<double>(c.duration_ms) / 1000);
  }
  for (const GateDecision& d : data.verdicts) {
    for (GateOutcome o : {GateOutcome::kShip, GateOutcome::kReject, GateOutcome::kNotEnoughData}) {
      sample(gate,
             fmt::format("patch=\"{}\",outcome=\"{}\"", PromLabelEscape(d.patch_id),
                         GateOutcomeName(o)),
             d.outcome == o ? 1 : 0);
    }
  }
  std::string out;
  for (Family* f : {&verdict, &crashes, &pause, &pause_max, &cpu, &cpu_low, &cpu_high, &mem,
                    &duration, &gate}) {
    out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n", f->name, f->help, f->name);
    out += f->samples;
  }
  out += "# EOF\n";
  return out;
}

std::string PatchMemoryNote(const CellResult& cell) {
  std::string note;
  if (cell.patch_mapped_kib) note = fmt::format("patch {:.0f} KiB", *cell.patch_mapped_kib);
  if (cell.island_kib)
    note += fmt::format("{}island {:.0f} KiB", note.empty() ? "" : ", ", *cell.island_kib);
  return note;
}

}  // namespace patchlab::metrics

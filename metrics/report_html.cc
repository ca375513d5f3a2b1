// The HTML report: one self-contained page (inline CSS and SVG, no script, no
// network) for a staging team. Every database string is escaped.
#include <algorithm>

#include "metrics/app_summary.h"
#include "metrics/internal/escape.h"
#include "metrics/internal/svg_chart.h"
#include "metrics/json_export.h"
#include "metrics/report.h"

namespace patchlab::metrics {

using internal::ChartRow;
using internal::HtmlEscape;

namespace {

constexpr const char* kStyle = R"css(
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1400px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #ddd; }
.meta { color: #555; font-size: 13px; }
.banner { border-radius: 6px; padding: 10px 14px; margin: 10px 0; color: #fff; }
.banner.ship { background: #2f7d4f; } .banner.reject { background: #c0392b; } .banner.nodata { background: #b9770e; }
.banner h3 { margin: 0 0 4px 0; font-size: 17px; } .banner ul { margin: 4px 0 0 18px; padding: 0; font-size: 13px; }
table { border-collapse: collapse; font-size: 12px; margin-top: 8px; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.v-pass { background: #d8f0df; } .v-fail { background: #f6d3cf; } .v-not-hotpatchable { background: #fbe5c8; }
.v-infra-error { background: #e4e4e4; } .bad { color: #c0392b; font-weight: bold; }
.chart { display: block; margin: 10px 0; } .reasons { color: #444; max-width: 360px; }
)css";

std::string Num(const std::optional<double>& v, const char* format) {
  return v ? fmt::format(fmt::runtime(format), *v) : "n/a";
}

std::string CellLabel(const CellResult& c, bool with_patch) {
  std::string base = fmt::format("{} · {} · {}", c.key.image, c.key.cpu, c.key.workload);
  return with_patch ? fmt::format("{}/{}: {}", c.key.scenario, c.key.patch_id, base) : base;
}

std::string Banner(const GateDecision& d, const Policy& policy) {
  const char* cls = d.outcome == GateOutcome::kShip     ? "ship"
                    : d.outcome == GateOutcome::kReject ? "reject"
                                                        : "nodata";
  const char* word = d.outcome == GateOutcome::kShip     ? "may ship"
                     : d.outcome == GateOutcome::kReject ? "must not ship"
                                                         : "not enough data";
  std::string out = fmt::format("<div class=\"banner {}\"><h3>Patch {}: {}</h3>", cls,
                                HtmlEscape(d.patch_id), word);
  out +=
      fmt::format("<div>{} cell(s) judged against {}; {} rule(s) broken, {} item(s) missing.</div>",
                  d.cells.size(), HtmlEscape(policy.source), d.failures.size(), d.missing.size());
  if (!d.failures.empty() || !d.missing.empty()) {
    out += "<ul>";
    for (const GateFailure& f : d.failures) {
      out += fmt::format("<li>{} — <b>{}</b>: {}</li>", HtmlEscape(f.cell.ToString()),
                         HtmlEscape(f.rule), HtmlEscape(f.message));
    }
    for (const MissingData& m : d.missing)
      out += fmt::format("<li>{}: {}</li>", m.noisy ? "noisy" : "missing", HtmlEscape(m.what));
    out += "</ul>";
  }
  out += "</div>\n";
  return out;
}

std::string CrashCell(const CellResult& c) {
  if (c.TotalCrashes() == 0) return "0";
  std::string out = fmt::format("<span class=\"bad\">{}</span>", c.TotalCrashes());
  for (const auto& [kind, count] : c.crashes) {
    if (count > 0) out += fmt::format("<br>{} {}", CrashKindName(kind), count);
  }
  return out;
}

std::string Matrix(const ReportData& data) {
  std::string out =
      "<table><thead><tr><th>Scenario</th><th>Patch</th><th>Image</th><th>CPU</th><th>Workload</th>"
      "<th>Verdict</th><th>Apply</th><th>Crashes</th><th>Pause median / max (ms)</th>"
      "<th>CPU overhead [99.9% interval], outcome, clock; rule</th><th>Memory "
      "(MiB)</th><th>Semantic</th><th>Duration (s)</th>"
      "<th>Run</th><th>Artefacts</th><th>Reasons</th></tr></thead><tbody>\n";
  for (const CellResult& c : data.cells) {
    std::optional<double> pause_max;
    if (!c.pause_us.empty())
      pause_max = *std::max_element(c.pause_us.begin(), c.pause_us.end()) / 1000;
    std::string cpu = CpuFigureWithRule(c, data.policy);
    std::string reasons;
    for (const std::string& r : c.reasons)
      reasons += (reasons.empty() ? "" : "<br>") + HtmlEscape(r);
    if (c.met_expectation)
      reasons += *c.met_expectation ? "<br><i>as the scenario expects</i>"
                                    : "<br><b>not as the scenario expects</b>";
    std::string artefacts =
        c.artefacts.empty()
            ? ""
            : fmt::format("<a href=\"{}\">{}</a>", HtmlEscape(internal::PathHref(c.artefacts)),
                          HtmlEscape(c.artefacts));
    out += fmt::format(
        "<tr "
        "class=\"v-{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><b>{}</b></td>"
        "<td>{}{}</td><td class=\"num\">{}</td><td class=\"num\">{} / {}</td><td "
        "class=\"num\">{}</td>"
        "<td class=\"num\">{}</td><td>{}</td><td class=\"num\">{:.1f}</td><td "
        "class=\"num\">{}</td><td>{}</td>"
        "<td class=\"reasons\">{}</td></tr>\n",
        VerdictName(c.verdict), HtmlEscape(c.key.scenario), HtmlEscape(c.key.patch_id),
        HtmlEscape(c.key.image), HtmlEscape(c.key.cpu), HtmlEscape(c.key.workload),
        VerdictName(c.verdict), ApplyResultName(c.apply),
        c.apply_reason.empty() ? "" : "<br>" + HtmlEscape(c.apply_reason), CrashCell(c),
        Num(c.pause_median_us ? std::optional<double>(*c.pause_median_us / 1000) : std::nullopt,
            "{:.2f}"),
        Num(pause_max, "{:.2f}"), cpu,
        Num(c.mem_overhead_kib ? std::optional<double>(*c.mem_overhead_kib / 1024) : std::nullopt,
            "{:.2f}") +
            (PatchMemoryNote(c).empty() ? "" : "<br>" + HtmlEscape(PatchMemoryNote(c))),
        SemanticVerdictName(c.semantic), static_cast<double>(c.duration_ms) / 1000, c.run_id,
        artefacts, reasons);
  }
  out += "</tbody></table>\n";
  return out;
}

std::string Charts(const ReportData& data) {
  const Policy& p = data.policy;
  bool many_patches = data.patches.size() > 1;
  std::vector<ChartRow> cpu, mem;
  std::vector<double> pauses_ms;
  std::map<CrashKind, int> crashes;
  for (const CellResult& c : data.cells) {
    ChartRow row{CellLabel(c, many_patches), {}, {}, {}, false};
    if (c.cpu_overhead_pct) {
      row.value = c.cpu_overhead_pct->value;
      row.low = c.cpu_overhead_pct->low;
      row.high = c.cpu_overhead_pct->high;
      row.bad = JudgeCellCpu(c, p) == OverheadOutcome::kAbove;
    }
    cpu.push_back(row);
    ChartRow m{CellLabel(c, many_patches), {}, {}, {}, false};
    if (c.mem_overhead_kib) {
      m.value = *c.mem_overhead_kib / 1024;
      m.bad = *m.value >= p.max_memory_overhead_mib;
    }
    mem.push_back(m);
    for (double us : c.pause_us) pauses_ms.push_back(us / 1000);
    for (const auto& [kind, count] : c.crashes) crashes[kind] += count;
  }
  std::vector<ChartRow> crash_rows;
  for (CrashKind k : kAllCrashKinds) {
    int n = crashes.contains(k) ? crashes[k] : 0;
    crash_rows.push_back(
        ChartRow{std::string(CrashKindName(k)), static_cast<double>(n), {}, {}, n > 0});
  }
  std::string out;
  out += internal::HorizontalChart("CPU overhead per cell (Hodges-Lehmann and its interval)", cpu,
                                   "% CPU", p.max_cpu_overhead_pct);
  out += internal::Histogram(fmt::format("Pause distribution ({} samples)", pauses_ms.size()),
                             pauses_ms, 30, "ms", p.max_pause_ms);
  out += internal::HorizontalChart("Memory overhead per patched process", mem, "MiB",
                                   p.max_memory_overhead_mib);
  out += internal::HorizontalChart(
      "Crashes by kind (all cells)", crash_rows, "crashes",
      p.max_crashes > 0 ? std::optional<double>(p.max_crashes) : std::nullopt);
  return out;
}

// A patch's cells grouped by the application they ran, as `patchlab compat`
// prints them: one row per patch and application, worst outcome first word.
std::string Applications(const ReportData& data) {
  std::string out =
      "<table><thead><tr><th>Patch</th><th>Application</th><th>Outcome</th><th>Cells</th>"
      "<th>Pass</th><th>Fail</th><th>Needs a restart</th><th>Infra error</th><th>Crashes</th>"
      "</tr></thead><tbody>\n";
  for (const PatchAppSummary& p : SummarizeByPatchAndApplication(data.cells)) {
    for (const AppSummary& a : p.apps) {
      std::string word = a.Word();
      bool bad = word == "crashes" || word == "fails";
      out += fmt::format(
          "<tr><td>{}</td><td>{}</td><td><b{}>{}</b></td><td class=\"num\">{}</td>"
          "<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>"
          "<td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
          HtmlEscape(p.patch_id), HtmlEscape(a.application), bad ? " class=\"bad\"" : "",
          HtmlEscape(word), a.cells, a.pass, a.fail, a.not_hotpatchable, a.infra_error, a.crashes);
    }
  }
  out += "</tbody></table>\n";
  return out;
}

std::string Findings(const ReportData& data) {
  if (data.findings.empty()) return "<p>No semantic findings recorded.</p>\n";
  std::string out =
      "<table><thead><tr><th>Run</th><th>Scenario</th><th>Patch</th><th>Function</th><th>Kind</th>"
      "<th>Minimal "
      "input</th><th>Old</th><th>New</th><th>Expected</th><th>Detail</th></tr></thead><tbody>\n";
  for (const SemanticFinding& f : data.findings) {
    out += fmt::format(
        "<tr "
        "class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</"
        "td><td><code>{}</code></td>"
        "<td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>\n",
        f.expected ? "v-pass" : "v-fail", f.run_id, HtmlEscape(f.scenario), HtmlEscape(f.patch_id),
        HtmlEscape(f.function), HtmlEscape(f.kind), HtmlEscape(f.input), HtmlEscape(f.old_result),
        HtmlEscape(f.new_result), f.expected ? "yes (the fix)" : "<b>no</b>", HtmlEscape(f.detail));
  }
  out += "</tbody></table>\n";
  return out;
}

std::string Images(const ReportData& data) {
  std::string out =
      "<table><thead><tr><th>Image</th><th>Kernel</th><th>Packages</th><th>Content "
      "hash</th></tr></thead><tbody>\n";
  for (const ImageInfo& i : data.images) {
    std::string packages;
    for (const std::string& p : i.packages)
      packages += (packages.empty() ? "" : ", ") + HtmlEscape(p);
    out += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>\n",
                       HtmlEscape(i.name), HtmlEscape(i.kernel_version), packages,
                       HtmlEscape(i.content_hash.substr(0, 16)));
  }
  out += "</tbody></table>\n";
  return out;
}

}  // namespace

std::string RenderHtml(const ReportData& data) {
  std::string out = fmt::format(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
      "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src "
      "'unsafe-inline'; "
      "img-src data:\">\n<title>patchlab: "
      "{}</title>\n<style>{}</style></head><body>\n<h1>patchlab: {}</h1>\n",
      HtmlEscape(data.title), kStyle, HtmlEscape(data.title));
  out += "<div class=\"meta\">";
  if (data.run) {
    const RunInfo& r = *data.run;
    out += fmt::format("Run {} · {} · started {} · finished {} · host {} · patchlab {} ({})", r.id,
                       RunStatusName(r.status), IsoTime(r.started_at),
                       r.finished_at ? IsoTime(r.finished_at) : "—", HtmlEscape(r.host),
                       HtmlEscape(r.version), HtmlEscape(r.git_revision));
    if (!r.label.empty()) out += fmt::format(" · label {}", HtmlEscape(r.label));
    if (!r.note.empty()) out += fmt::format(" · {}", HtmlEscape(r.note));
    out += "<br>";
  }
  out += fmt::format("Generated {} from {} · policy: {}</div>\n", IsoTime(data.generated_at),
                     HtmlEscape(data.db_path), HtmlEscape(data.policy.source));

  out += "<h2>Verdicts</h2>\n";
  if (data.verdicts.empty()) out += "<p>No patch has results here.</p>\n";
  for (const GateDecision& d : data.verdicts) out += Banner(d, data.policy);
  out += "<h2>By application</h2>\n";
  out += Applications(data);
  out += fmt::format("<h2>Compatibility matrix ({} cells)</h2>\n", data.cells.size());
  out += Matrix(data);
  out += "<h2>Charts</h2>\n";
  out += Charts(data);
  out += fmt::format("<h2>Semantic findings ({})</h2>\n", data.findings.size());
  out += Findings(data);
  out += "<h2>Images</h2>\n";
  out += Images(data);
  out += "</body></html>\n";
  return out;
}

}  // namespace patchlab::metrics

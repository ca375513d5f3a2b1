// Reports of the compatibility database for the people and machines that read
// them: a staging team (HTML), CI systems (JUnit XML), a pull-request comment
// (Markdown), scripts (JSON) and Prometheus (OpenMetrics text).
//
// A report is gathered once (GatherRunReport / GatherPatchReport) into a
// ReportData, then rendered to any format by pure functions. Every string from
// the database (scenario, image and patch names, reasons: user input) is escaped
// for the format it lands in. The HTML is self-contained: no script, no network.
//
// Thread-safety: rendering is pure; gathering is as safe as the CompatDb given.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "metrics/cell_result.h"
#include "metrics/compat_db.h"
#include "metrics/gate.h"
#include "metrics/policy.h"

namespace patchlab::metrics {

enum class ReportFormat { kHtml, kJunit, kMarkdown, kJson, kOpenMetrics };
// "html" "junit" "md" "json" "openmetrics"
std::string_view ReportFormatName(ReportFormat f);
Result<ReportFormat> ParseReportFormat(std::string_view name);  // also accepts "markdown"

struct ReportData {
  std::string title;                   // "run 12" or "patch fix-1"
  std::optional<RunInfo> run;          // for a run report
  std::vector<PatchInfo> patches;      // every patch the cells name
  std::vector<GateDecision> verdicts;  // one per patch, in `patches` order
  std::vector<CellResult> cells;       // in key order
  std::vector<SemanticFinding> findings;
  std::vector<ImageInfo> images;  // every image the cells name
  Policy policy;
  int64_t generated_at = 0;  // unix seconds
  std::string db_path;
};

// A run's cells, judged per patch against `policy`, with the run's planned but
// unrecorded cells as missing data. Fails (kNotFound) on an unknown run.
Result<ReportData> GatherRunReport(CompatDb& db, int64_t run, const Policy& policy);
// A patch's newest result per cell across runs, with the gate's decision.
Result<ReportData> GatherPatchReport(CompatDb& db, const std::string& patch_id,
                                     const Policy& policy);

std::string RenderReport(const ReportData& data, ReportFormat format);
std::string RenderHtml(const ReportData& data);
std::string RenderJunit(const ReportData& data);
std::string RenderMarkdown(const ReportData& data);
std::string RenderJson(const ReportData& data);
std::string RenderOpenMetrics(const ReportData& data);

// Whether a cell counts as failed in test-oriented reports (JUnit, Markdown):
// it broke a policy rule and the scenario did not expect that outcome.
bool CellFailedForReport(const CellResult& cell, const Policy& policy);

// The patch's own memory beside a cell's PSS growth, as every report shows it:
// "patch 24 KiB, island 12 KiB" (what hotpatch mapped into the target's
// processes, and of that the trampoline island pages); empty when the cell
// recorded neither.
std::string PatchMemoryNote(const CellResult& cell);

}  // namespace patchlab::metrics

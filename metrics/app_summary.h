// AppSummary: a patch's latest cells grouped by the application they ran
// ("zlib crc32 fix: nginx-light ok, redis-server crashes"), for `patchlab
// compat` and the reports. Cells of targets the lab built (no application
// recorded) are grouped by their scenario.
//
// Thread-safety: pure function on values.
#pragma once

#include <string>
#include <vector>

#include "metrics/cell_result.h"

namespace patchlab::metrics {

struct AppSummary {
  std::string application;  // "nginx-light 1.22.1-9", or "scenario kv-parse-fix"
  int cells = 0;
  int pass = 0;
  int fail = 0;
  int not_hotpatchable = 0;
  int infra_error = 0;
  int crashes = 0;  // over every cell
  // "ok", "crashes", "fails", "needs a restart", "not run": the worst outcome.
  std::string Word() const;
};

// One entry per application, in the order first seen in `cells`.
std::vector<AppSummary> SummarizeByApplication(const std::vector<CellResult>& cells);

// "nginx-light 1.22.1-9 ok (2 cells), redis-server 5:7.0.15 crashes (1 cell)".
std::string AppSummaryLine(const std::vector<AppSummary>& apps);

// A patch's cells by application, for reports that hold several patches.
struct PatchAppSummary {
  std::string patch_id;
  std::vector<AppSummary> apps;
};
// One entry per patch, in the order first seen in `cells`; each as
// SummarizeByApplication of that patch's cells.
std::vector<PatchAppSummary> SummarizeByPatchAndApplication(const std::vector<CellResult>& cells);

}  // namespace patchlab::metrics

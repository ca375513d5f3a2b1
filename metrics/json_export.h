// JSON forms of the database's records, shared by `--json` queries, the JSON
// report and the regression report. Field names are the database's column
// names; enums are their stable lowercase names; absent figures are null.
//
// Thread-safety: pure functions.
#pragma once

#include <nlohmann/json.hpp>

#include "metrics/app_summary.h"
#include "metrics/cell_result.h"
#include "metrics/gate.h"

namespace patchlab::metrics {

nlohmann::json ToJson(const CellResult& cell);
nlohmann::json ToJson(const RunInfo& run);
nlohmann::json ToJson(const PatchInfo& patch);
nlohmann::json ToJson(const ImageInfo& image);
nlohmann::json ToJson(const SemanticFinding& finding);
nlohmann::json ToJson(const GateDecision& decision);  // outcome, exit_code, failures, missing
// application, outcome (AppSummary::Word), cells, pass, fail, not_hotpatchable, infra_error,
// crashes
nlohmann::json ToJson(const AppSummary& app);

// "2026-11-24T17:05:00Z" for unix seconds; "" for 0.
std::string IsoTime(int64_t unix_seconds);

}  // namespace patchlab::metrics

// The release gate: may this patch ship? Judges the newest real measurement of
// every cell of a patch (CompatDb::LatestCellsOfPatch) against a Policy.
//
//   kShip           every planned cell recorded, every rule met       exit 0
//   kReject         at least one rule broken (every one is listed)    exit 1
//   kNotEnoughData  no rule broken, but cells or figures are missing,  exit 3
//                   or a CPU figure is too noisy to judge
//
// A rejection wins over missing data: one broken rule is enough to say no, and
// the missing cells are listed too. The cells a patch must cover are the ones
// planned for it (per scenario, by the newest run that planned it), the ones
// recorded for it, and, for each ring that names images, at least one cell per
// image. An infra-error cell is missing data, never a failure of the patch.
//
// Thread-safety: functions are as thread-safe as the CompatDb they are given.
#pragma once

#include <string>
#include <vector>

#include "base/error.h"
#include "metrics/cell_result.h"
#include "metrics/compat_db.h"
#include "metrics/policy.h"

namespace patchlab::metrics {

enum class GateOutcome { kShip = 0, kReject = 1, kNotEnoughData = 3 };
std::string_view GateOutcomeName(GateOutcome o);  // "ship" "reject" "not-enough-data"

// One broken rule in one cell.
struct GateFailure {
  CellKey cell;
  std::string rule;     // the policy field, e.g. "max_crashes", "require_applied"
  std::string message;  // "3 crashes (segfault 2, workload-signal 1); the policy allows 0"
  int64_t run_id = 0;   // where the figure was measured
};

// Something the gate needed and did not find, or found too noisy to judge.
struct MissingData {
  std::string
      what;  // "no result for kv/fix-1 on deb12 x qemu64 x default", "no CPU overhead figure"
  std::optional<CellKey> cell;
  // A CPU figure that was measured but whose interval straddles the limit
  // (overhead_rule.h): neither a pass nor a fail; shown as "noisy", not "missing".
  bool noisy = false;
};

struct GateDecision {
  std::string patch_id;
  std::string ring;  // empty: every ring
  GateOutcome outcome = GateOutcome::kNotEnoughData;
  std::vector<GateFailure> failures;
  std::vector<MissingData> missing;
  std::vector<CellResult> cells;  // the cells judged
  // Per cell with a CPU figure: "CELL: +1.17% [1.08, 1.55] within
  // (guest-instructions, 12 pairs); beside it: native-cpu-time ...": the
  // judged figure, its clock and the figure beside it.
  std::vector<std::string> cpu_figures;
  // Human-readable, one reason per line: "REJECT fix-1: ..." then each failure
  // ("cell ...: rule: message"), each missing item, and each cell's CPU figure.
  std::string Explain() const;
  int ExitCode() const { return static_cast<int>(outcome); }
};

// Judges one cell against the policy: the rules it breaks and the figures it
// lacks. Its CPU overhead is judged by JudgeOverhead (overhead_rule.h) against
// EffectiveCpuLimit(policy, the cell's scenario limit): the rule the run used.
void JudgeCell(const CellResult& cell, const Policy& policy, std::vector<GateFailure>& failures,
               std::vector<MissingData>& missing);

// How `policy` judges the cell's CPU figure (JudgeOverhead against
// EffectiveCpuLimit); nullopt when the cell has none.
std::optional<OverheadOutcome> JudgeCellCpu(const CellResult& cell, const Policy& policy);

// The cell's CPU figure for a report, with how it was measured and the rule
// it is judged by: "+0.42% [0.31, 0.55] within (guest-instructions, 12
// pairs); rule: below 2.00%: ..."; "n/a" without a figure.
std::string CpuFigureWithRule(const CellResult& cell, const Policy& policy);

// The gate over a given set of cells (e.g. one run's), with `unrecorded` cells
// reported as missing. No database access; no ring logic.
GateDecision JudgeCells(const std::string& patch_id, std::vector<CellResult> cells,
                        const std::vector<CellKey>& unrecorded, const Policy& policy);

// The gate over every ring of the policy. Fails only when the database cannot
// be read; an unknown patch is a decision (kNotEnoughData, "no results").
Result<GateDecision> EvaluateGate(CompatDb& db, const std::string& patch_id, const Policy& policy);

// The gate restricted to one ring's images (`patchlab run --rings` stops after a
// ring that does not ship). Fails (kInvalidArgument) when the policy has no such ring.
Result<GateDecision> EvaluateRing(CompatDb& db, const std::string& patch_id,
                                  const std::string& ring, const Policy& policy);

}  // namespace patchlab::metrics

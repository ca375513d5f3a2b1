#include "metrics/gate.h"

#include <algorithm>
#include <set>

#include "metrics/cpu_cross_check.h"

namespace patchlab::metrics {
namespace {

std::string CrashList(const CellResult& cell) {
  std::string out;
  for (const auto& [kind, count] : cell.crashes) {
    if (count <= 0) continue;
    out += fmt::format("{}{} {}", out.empty() ? "" : ", ", CrashKindName(kind), count);
  }
  return out;
}

std::string JoinReasons(const std::vector<std::string>& reasons) {
  std::string out;
  for (const auto& r : reasons) out += (out.empty() ? "" : "; ") + r;
  return out.empty() ? "no reason recorded" : out;
}

void Add(std::vector<GateFailure>& failures, const CellResult& cell, std::string rule,
         std::string message) {
  failures.push_back(GateFailure{cell.key, std::move(rule), std::move(message), cell.run_id});
}

std::optional<double> WorstPauseUs(const CellResult& cell) {
  if (!cell.pause_us.empty()) return *std::max_element(cell.pause_us.begin(), cell.pause_us.end());
  return cell.pause_median_us;
}

// "cpu overhead +0.42% (99% interval 0.31..0.55%, 8 pairs, guest-instructions)"
std::string DescribeCpuFigure(const CellResult& cell) {
  const Estimate& e = *cell.cpu_overhead_pct;
  std::string clock(CpuClockName(cell.cpu_clock));
  std::string beside = DescribeCpuReference(cell);
  return fmt::format("CPU overhead {:+.2f}% (interval {:.2f}..{:.2f}%, {} pairs{}{}{}{})", e.value,
                     e.low, e.high, e.samples, clock.empty() ? "" : ", ", clock,
                     beside.empty() ? "" : "; ", beside);
}

void JudgeCpu(const CellResult& cell, const Policy& policy, std::vector<GateFailure>& failures,
              std::vector<MissingData>& missing) {
  if (!cell.cpu_overhead_pct) {
    if (policy.require_figures) {
      missing.push_back(
          MissingData{fmt::format("no CPU overhead figure for {}", cell.key.ToString()), cell.key});
    }
    return;
  }
  double limit = EffectiveCpuLimit(policy.max_cpu_overhead_pct, cell.cpu_scenario_limit_pct);
  switch (JudgeOverhead(*cell.cpu_overhead_pct, limit, policy.cpu_overhead_judged_on)) {
    case OverheadOutcome::kWithin:
      return;
    case OverheadOutcome::kAbove:
      Add(failures, cell, "max_cpu_overhead_pct",
          fmt::format("{} is not {}", DescribeCpuFigure(cell),
                      DescribeOverheadRule(limit, policy.cpu_overhead_judged_on)));
      return;
    case OverheadOutcome::kNoisy:
      missing.push_back(MissingData{
          fmt::format("{}: {} straddles the {:.2f}% limit: too noisy to judge (measure again on "
                      "a quieter host or with more windows)",
                      cell.key.ToString(), DescribeCpuFigure(cell), limit),
          cell.key, true});
      return;
  }
}

// Judges every cell of `d` and lists each one's CPU figure with its clock.
void JudgeAll(GateDecision& d, const Policy& policy) {
  for (const CellResult& cell : d.cells) {
    JudgeCell(cell, policy, d.failures, d.missing);
    if (auto outcome = JudgeCellCpu(cell, policy)) {
      const Estimate& e = *cell.cpu_overhead_pct;
      std::string clock(CpuClockName(cell.cpu_clock));
      std::string beside = DescribeCpuReference(cell);
      d.cpu_figures.push_back(fmt::format("{}: {:+.2f}% [{:.2f}, {:.2f}] {} ({}, {} pairs){}{}",
                                          cell.key.ToString(), e.value, e.low, e.high,
                                          OverheadOutcomeName(*outcome),
                                          clock.empty() ? "clock not recorded" : clock, e.samples,
                                          beside.empty() ? "" : "; ", beside));
    }
  }
}

void Conclude(GateDecision& d) {
  // A patch-wide gap (e.g. the semantic check) is reported once, not per cell.
  std::set<std::string> seen;
  std::erase_if(d.missing, [&](const MissingData& m) { return !seen.insert(m.what).second; });
  if (!d.failures.empty()) {
    d.outcome = GateOutcome::kReject;
  } else if (!d.missing.empty()) {
    d.outcome = GateOutcome::kNotEnoughData;
  } else {
    d.outcome = GateOutcome::kShip;
  }
}

Result<GateDecision> Evaluate(CompatDb& db, const std::string& patch_id, const Ring* only_ring,
                              const Policy& policy) {
  GateDecision d;
  d.patch_id = patch_id;
  if (only_ring != nullptr) d.ring = only_ring->name;
  auto in_scope = [&](const std::string& image) {
    return only_ring == nullptr || only_ring->Contains(image);
  };

  auto cells = db.LatestCellsOfPatch(patch_id);
  if (!cells) return std::unexpected(cells.error());
  auto planned = db.PlannedCellsOfPatch(patch_id);
  if (!planned) return std::unexpected(planned.error());

  std::set<CellKey> recorded;
  std::set<std::string> images_measured;
  for (CellResult& cell : *cells) {
    if (!in_scope(cell.key.image)) continue;
    recorded.insert(cell.key);
    if (cell.verdict != Verdict::kInfraError) images_measured.insert(cell.key.image);
    d.cells.push_back(std::move(cell));
  }
  JudgeAll(d, policy);
  for (const CellKey& key : *planned) {
    if (in_scope(key.image) && !recorded.contains(key)) {
      d.missing.push_back(MissingData{fmt::format("no result for {}", key.ToString()), key});
    }
  }
  for (const Ring& ring : policy.rings) {
    if (only_ring != nullptr && ring.name != only_ring->name) continue;
    for (const std::string& image : ring.images) {
      if (!images_measured.contains(image)) {
        d.missing.push_back(
            MissingData{fmt::format("ring '{}': no result on image {} (any CPU x any workload)",
                                    ring.name, image),
                        {}});
      }
    }
  }
  if (d.cells.empty() && d.missing.empty()) {
    d.missing.push_back(MissingData{
        only_ring == nullptr
            ? fmt::format("no results recorded for patch {}", patch_id)
            : fmt::format("no results recorded for patch {} in ring '{}'", patch_id, d.ring),
        {}});
  }
  Conclude(d);
  return d;
}

}  // namespace

std::string_view GateOutcomeName(GateOutcome o) {
  switch (o) {
    case GateOutcome::kShip:
      return "ship";
    case GateOutcome::kReject:
      return "reject";
    case GateOutcome::kNotEnoughData:
      return "not-enough-data";
  }
  std::abort();
}

void JudgeCell(const CellResult& cell, const Policy& policy, std::vector<GateFailure>& failures,
               std::vector<MissingData>& missing) {
  if (cell.verdict == Verdict::kInfraError) {
    missing.push_back(
        MissingData{fmt::format("no measurement for {} (infra error in run {}: {})",
                                cell.key.ToString(), cell.run_id, JoinReasons(cell.reasons)),
                    cell.key});
    return;
  }
  int crashes = cell.TotalCrashes();
  if (crashes > policy.max_crashes) {
    Add(failures, cell, "max_crashes",
        fmt::format("{} crash{} ({}); the policy allows {}", crashes, crashes == 1 ? "" : "es",
                    CrashList(cell), policy.max_crashes));
  }
  bool applied = cell.apply == ApplyResult::kApplied;
  if (policy.require_applied && !applied) {
    Add(failures, cell, "require_applied",
        fmt::format("{}{}", ApplyResultName(cell.apply),
                    cell.apply_reason.empty() ? "" : ": " + cell.apply_reason));
  }
  if (policy.require_pass_verdict && cell.verdict != Verdict::kPass) {
    Add(failures, cell, "require_pass_verdict",
        fmt::format("verdict {}: {}", VerdictName(cell.verdict), JoinReasons(cell.reasons)));
  }
  if (applied) {
    JudgeCpu(cell, policy, failures, missing);
    if (cell.mem_overhead_kib) {
      double mib = *cell.mem_overhead_kib / 1024.0;
      if (mib >= policy.max_memory_overhead_mib) {
        Add(failures, cell, "max_memory_overhead_mib",
            fmt::format("memory overhead {:.2f} MiB per patched process is not below {:.2f} MiB",
                        mib, policy.max_memory_overhead_mib));
      }
    } else if (policy.require_figures) {
      missing.push_back(MissingData{
          fmt::format("no memory overhead figure for {}", cell.key.ToString()), cell.key});
    }
    if (auto worst = WorstPauseUs(cell)) {
      double ms = *worst / 1000.0;
      if (ms >= policy.max_pause_ms) {
        Add(failures, cell, "max_pause_ms",
            fmt::format("longest pause {:.3f} ms is not below {:.3f} ms", ms, policy.max_pause_ms));
      }
    } else if (policy.require_figures) {
      missing.push_back(
          MissingData{fmt::format("no pause figure for {}", cell.key.ToString()), cell.key});
    }
  }
  if (policy.require_semantic_pass) {
    switch (cell.semantic) {
      case SemanticVerdict::kPass:
        break;
      case SemanticVerdict::kFail:
        Add(failures, cell, "require_semantic_pass",
            "the semantic check found an undeclared divergence");
        break;
      case SemanticVerdict::kInconclusive:
        Add(failures, cell, "require_semantic_pass",
            "the semantic check was inconclusive; the policy needs a pass");
        break;
      case SemanticVerdict::kNotRun:
        missing.push_back(MissingData{fmt::format("no semantic check recorded for {}/{}",
                                                  cell.key.scenario, cell.key.patch_id),
                                      {}});
        break;
    }
  }
}

std::optional<OverheadOutcome> JudgeCellCpu(const CellResult& cell, const Policy& policy) {
  if (!cell.cpu_overhead_pct) return std::nullopt;
  double limit = EffectiveCpuLimit(policy.max_cpu_overhead_pct, cell.cpu_scenario_limit_pct);
  return JudgeOverhead(*cell.cpu_overhead_pct, limit, policy.cpu_overhead_judged_on);
}

std::string CpuFigureWithRule(const CellResult& cell, const Policy& policy) {
  std::optional<OverheadOutcome> outcome = JudgeCellCpu(cell, policy);
  if (!outcome) return "n/a";
  const Estimate& e = *cell.cpu_overhead_pct;
  std::string clock(CpuClockName(cell.cpu_clock));
  double limit = EffectiveCpuLimit(policy.max_cpu_overhead_pct, cell.cpu_scenario_limit_pct);
  std::string beside = DescribeCpuReference(cell);
  return fmt::format("{:+.2f}% [{:.2f}, {:.2f}] {} ({}, {} pairs){}{}; rule: {}", e.value, e.low,
                     e.high, OverheadOutcomeName(*outcome),
                     clock.empty() ? "clock not recorded" : clock, e.samples,
                     beside.empty() ? "" : "; ", beside,
                     DescribeOverheadRule(limit, policy.cpu_overhead_judged_on));
}

std::string GateDecision::Explain() const {
  std::string out;
  std::string scope = ring.empty() ? "" : fmt::format(" (ring '{}')", ring);
  switch (outcome) {
    case GateOutcome::kShip:
      out = fmt::format("SHIP {}{}: {} cell(s), every rule met\n", patch_id, scope, cells.size());
      break;
    case GateOutcome::kReject:
      out = fmt::format("REJECT {}{}: {} rule(s) broken\n", patch_id, scope, failures.size());
      break;
    case GateOutcome::kNotEnoughData: {
      size_t noisy = std::count_if(missing.begin(), missing.end(),
                                   [](const MissingData& m) { return m.noisy; });
      out = fmt::format("NOT ENOUGH DATA {}{}: {} item(s) missing, {} figure(s) too noisy\n",
                        patch_id, scope, missing.size() - noisy, noisy);
      break;
    }
  }
  for (const GateFailure& f : failures) {
    out += fmt::format("  fail: {} [{}] (run {}): {}\n", f.cell.ToString(), f.rule, f.run_id,
                       f.message);
  }
  for (const MissingData& m : missing) {
    out += fmt::format("  {}: {}\n", m.noisy ? "noisy" : "missing", m.what);
  }
  for (const std::string& f : cpu_figures) out += fmt::format("  cpu: {}\n", f);
  return out;
}

GateDecision JudgeCells(const std::string& patch_id, std::vector<CellResult> cells,
                        const std::vector<CellKey>& unrecorded, const Policy& policy) {
  GateDecision d;
  d.patch_id = patch_id;
  d.cells = std::move(cells);
  JudgeAll(d, policy);
  for (const CellKey& key : unrecorded) {
    d.missing.push_back(MissingData{fmt::format("no result for {}", key.ToString()), key});
  }
  if (d.cells.empty() && d.missing.empty()) {
    d.missing.push_back(MissingData{fmt::format("no results recorded for patch {}", patch_id), {}});
  }
  Conclude(d);
  return d;
}

Result<GateDecision> EvaluateGate(CompatDb& db, const std::string& patch_id, const Policy& policy) {
  return Evaluate(db, patch_id, nullptr, policy);
}

Result<GateDecision> EvaluateRing(CompatDb& db, const std::string& patch_id,
                                  const std::string& ring, const Policy& policy) {
  const Ring* r = policy.FindRing(ring);
  if (r == nullptr) {
    std::string names;
    for (const Ring& each : policy.rings) names += (names.empty() ? "" : ", ") + each.name;
    return Fail(ErrorCode::kInvalidArgument, "{}: no ring '{}' (rings: {})", policy.source, ring,
                names);
  }
  return Evaluate(db, patch_id, r, policy);
}

}  // namespace patchlab::metrics

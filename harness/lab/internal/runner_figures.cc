#include "harness/lab/internal/runner_figures.h"

#include <charconv>
#include <cmath>

#include "metrics/stats.h"

namespace patchlab::harness::internal {
namespace {

using metrics::ApplyResult;
using MVerdict = metrics::Verdict;

// hotpatch's exit codes (issue 3): the contract the lab reads.
constexpr int kHotpatchOk = 0;
constexpr int kHotpatchRefused = 3;
constexpr int kHotpatchRolledBack = 4;
constexpr int kHotpatchTargetGone = 5;

std::string_view OpName(PatchCall::Op op) {
  switch (op) {
    case PatchCall::Op::kApply:
      return "apply";
    case PatchCall::Op::kRevert:
      return "revert";
    case PatchCall::Op::kVerify:
      return "verify";
  }
  std::abort();
}

std::string FirstLine(std::string_view s) {
  size_t nl = s.find('\n');
  std::string line(s.substr(0, nl));
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
  return line;
}

// CPU-ns per operation in a window; nullopt when the window did no work (the
// target stalled: a hang is reported elsewhere, not divided by zero here).
std::optional<double> CostPerOp(const Window& w) {
  if (w.end.ops <= w.begin.ops || w.end.cpu_ns < w.begin.cpu_ns) return std::nullopt;
  return static_cast<double>(w.end.cpu_ns - w.begin.cpu_ns) /
         static_cast<double>(w.end.ops - w.begin.ops);
}

}  // namespace

Result<StatsSample> ParseStatsLine(std::string_view line) {
  StatsSample s;
  bool seen[4] = {};
  std::string_view rest = line;
  while (!rest.empty() && (rest.back() == '\n' || rest.back() == ' ')) rest.remove_suffix(1);
  if (rest.empty()) return Fail(ErrorCode::kParse, "empty stats line");
  while (!rest.empty()) {
    size_t sp = rest.find(' ');
    std::string_view field = rest.substr(0, sp);
    rest = sp == std::string_view::npos ? std::string_view() : rest.substr(sp + 1);
    size_t eq = field.find('=');
    if (eq == std::string_view::npos)
      return Fail(ErrorCode::kParse, "stats line '{}': '{}' is not key=value", line, field);
    std::string_view key = field.substr(0, eq), value = field.substr(eq + 1);
    uint64_t v = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
    if (ec != std::errc() || end != value.data() + value.size()) {
      return Fail(ErrorCode::kParse, "stats line '{}': '{}' is not a number", line, value);
    }
    static constexpr std::string_view kKeys[] = {"ops", "errors", "cpu_ns", "wall_ns"};
    uint64_t* slots[] = {&s.ops, &s.errors, &s.cpu_ns, &s.wall_ns};
    bool known = false;
    for (int i = 0; i < 4; ++i) {
      if (key == kKeys[i]) {
        *slots[i] = v;
        seen[i] = known = true;
      }
    }
    // Unknown keys are allowed: a target may report more than the lab reads.
    (void)known;
  }
  if (!seen[0] || !seen[1] || !seen[2]) {
    return Fail(ErrorCode::kParse, "stats line '{}' lacks ops=, errors= or cpu_ns=", line);
  }
  return s;
}

void ComputeFigures(const CellObservations& obs, const LimitsSpec& limits,
                    metrics::CellResult& cell, bool& overhead_flagged) {
  overhead_flagged = false;
  cell.semantic = obs.semantic;
  cell.reasons.clear();
  cell.crashes.clear();
  cell.pause_us.clear();
  cell.pause_median_us.reset();
  cell.cpu_overhead_pct.reset();
  cell.mem_overhead_kib.reset();
  if (obs.infra_error) {
    cell.verdict = MVerdict::kInfraError;
    cell.apply = ApplyResult::kNotRun;
    cell.reasons.push_back("infrastructure: " + *obs.infra_error);
    return;
  }

  for (const Crash& c : obs.crashes) {
    ++cell.crashes[c.kind];
    cell.reasons.push_back(fmt::format("crash ({}): {}", metrics::CrashKindName(c.kind), c.detail));
  }

  // The first apply decides whether the patch is live-applicable at all; the
  // later ones (alternations, repeats) must keep succeeding.
  bool refused = false, failed = false;
  bool first_apply = true;
  cell.apply = ApplyResult::kNotRun;
  for (const PatchCall& call : obs.calls) {
    if (call.op == PatchCall::Op::kApply && call.exit_code == kHotpatchOk && call.pause_us) {
      cell.pause_us.push_back(*call.pause_us);
    }
    if (call.op == PatchCall::Op::kApply && first_apply) {
      first_apply = false;
      switch (call.exit_code) {
        case kHotpatchOk:
          cell.apply = ApplyResult::kApplied;
          break;
        case kHotpatchRefused:
          cell.apply = ApplyResult::kRefused;
          break;
        case kHotpatchRolledBack:
          cell.apply = ApplyResult::kRolledBack;
          break;
        default:
          cell.apply = ApplyResult::kNotRun;
          break;
      }
      if (call.exit_code == kHotpatchRefused || call.exit_code == kHotpatchRolledBack) {
        refused = true;
        cell.apply_reason = FirstLine(call.message);
        cell.reasons.push_back(fmt::format(
            "not hotpatchable — needs a restart: apply {}: {}",
            call.exit_code == kHotpatchRefused ? "refused" : "rolled back", cell.apply_reason));
        continue;
      }
    }
    if (call.exit_code == kHotpatchOk) continue;
    failed = true;
    if (call.exit_code == kHotpatchTargetGone) {
      cell.reasons.push_back(fmt::format("{}: the target died during the call: {}", OpName(call.op),
                                         FirstLine(call.message)));
    } else {
      cell.reasons.push_back(fmt::format("{} failed (hotpatch exit {}): {}", OpName(call.op),
                                         call.exit_code, FirstLine(call.message)));
    }
  }
  for (const std::string& p : obs.problems) {
    failed = true;
    cell.reasons.push_back(p);
  }
  if (!cell.pause_us.empty()) cell.pause_median_us = metrics::Median(cell.pause_us);

  if (obs.last_stats && obs.last_stats->errors > 0) {
    failed = true;
    cell.reasons.push_back(
        fmt::format("the target counted {} wrong results", obs.last_stats->errors));
  }

  // CPU overhead: each patched window against the unpatched one measured
  // just before it, under the same load.
  std::vector<double> unpatched, patched;
  double pending = -1;  // the last unpatched window's cost; < 0: none
  for (const Window& w : obs.windows) {
    double cost = CostPerOp(w).value_or(-1);
    if (!w.patched) {
      pending = cost;
    } else if (pending > 0 && cost > 0) {
      unpatched.push_back(pending);
      patched.push_back(cost);
      pending = -1;
    }
  }
  if (!unpatched.empty()) {
    cell.cpu_overhead_pct = metrics::PairedOverheadPct(unpatched, patched);
  }
  if (cell.cpu_overhead_pct && cell.cpu_overhead_pct->low > limits.cpu_overhead_pct) {
    overhead_flagged = true;
    cell.reasons.push_back(
        fmt::format("cpu overhead {:.1f}% (interval {:.1f}..{:.1f}%) above the {:.1f}% limit",
                    cell.cpu_overhead_pct->value, cell.cpu_overhead_pct->low,
                    cell.cpu_overhead_pct->high, limits.cpu_overhead_pct));
  }
  if (obs.pss_before_kib && obs.pss_after_kib) {
    cell.mem_overhead_kib =
        static_cast<double>(*obs.pss_after_kib) - static_cast<double>(*obs.pss_before_kib);
    if (*cell.mem_overhead_kib > limits.mem_overhead_kib) {
      cell.reasons.push_back(fmt::format("memory overhead {:.0f} KiB above the {:.0f} KiB limit",
                                         *cell.mem_overhead_kib, limits.mem_overhead_kib));
    }
  }
  bool pause_over = cell.pause_median_us && *cell.pause_median_us > limits.pause_us;
  if (pause_over) {
    cell.reasons.push_back(fmt::format("pause {:.0f} us above the {:.0f} us limit",
                                       *cell.pause_median_us, limits.pause_us));
  }
  bool mem_over = cell.mem_overhead_kib && *cell.mem_overhead_kib > limits.mem_overhead_kib;
  if (obs.semantic == metrics::SemanticVerdict::kFail) {
    cell.reasons.push_back("the semantic check found an undeclared divergence");
  }

  if (!cell.crashes.empty() || failed || overhead_flagged || mem_over || pause_over ||
      obs.semantic == metrics::SemanticVerdict::kFail) {
    cell.verdict = MVerdict::kFail;
  } else if (refused) {
    cell.verdict = MVerdict::kNotHotpatchable;
  } else if (cell.apply == ApplyResult::kApplied) {
    cell.verdict = MVerdict::kPass;
  } else {
    // No apply was attempted although nothing crashed: the runner gave up
    // early for a reason it reported as a call failure.
    cell.verdict = MVerdict::kFail;
    if (cell.reasons.empty()) cell.reasons.push_back("the patch was never applied");
  }
}

bool MetExpectation(const metrics::CellResult& cell, bool overhead_flagged,
                    const ExpectSpec& expect, std::vector<std::string>& why_not) {
  why_not.clear();
  if (cell.verdict == MVerdict::kInfraError) {
    why_not.push_back("infrastructure error: the cell did not run");
    return false;
  }
  if (metrics::VerdictName(cell.verdict) != VerdictName(expect.verdict)) {
    why_not.push_back(fmt::format("verdict {} where {} was expected",
                                  metrics::VerdictName(cell.verdict), VerdictName(expect.verdict)));
  }
  int max_crashes = expect.max_crashes.value_or(expect.verdict == Verdict::kFail ? INT32_MAX : 0);
  if (cell.TotalCrashes() > max_crashes) {
    why_not.push_back(
        fmt::format("{} crashes, at most {} expected", cell.TotalCrashes(), max_crashes));
  }
  if (expect.overhead_flagged && *expect.overhead_flagged != overhead_flagged) {
    why_not.push_back(*expect.overhead_flagged
                          ? "the CPU overhead was expected to exceed the limit"
                          : "the CPU overhead was expected to stay within the limit");
  }
  if (expect.reason_contains) {
    bool found = false;
    for (const auto& r : cell.reasons)
      found = found || r.find(*expect.reason_contains) != std::string::npos;
    if (!found) why_not.push_back(fmt::format("no reason mentions '{}'", *expect.reason_contains));
  }
  if (expect.semantic && *expect.semantic != "skipped" &&
      metrics::SemanticVerdictName(cell.semantic) != *expect.semantic) {
    why_not.push_back(fmt::format("semantic check {} where {} was expected",
                                  metrics::SemanticVerdictName(cell.semantic), *expect.semantic));
  }
  return why_not.empty();
}

}  // namespace patchlab::harness::internal

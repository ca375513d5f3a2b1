#include "harness/lab/internal/runner_figures.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "metrics/cpu_cross_check.h"
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

// A window as the statistics see it: CPU spent (in the clock's unit) and
// operations done. A window that did no work, or whose counters went back,
// has no work (the target stalled: a hang is reported elsewhere).
metrics::WindowSample ToSample(const Window& w) {
  metrics::WindowSample s;
  s.patched = w.patched;
  if (w.end.ops <= w.begin.ops || w.end.cpu_ns < w.begin.cpu_ns) return s;
  s.cost = static_cast<double>(w.end.cpu_ns - w.begin.cpu_ns);
  s.work = static_cast<double>(w.end.ops - w.begin.ops);
  return s;
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

namespace {

// Clears every figure ComputeFigures fills, so a cell object can be reused.
void ResetFigures(const CellObservations& obs, metrics::CellResult& cell) {
  cell.semantic = obs.semantic;
  cell.reasons.clear();
  cell.crashes.clear();
  cell.pause_us.clear();
  cell.pause_median_us.reset();
  cell.cpu_overhead_pct.reset();
  cell.cpu_outcome.reset();
  cell.cpu_windows.clear();
  cell.cpu_reference_pct.reset();
  cell.cpu_reference_clock = metrics::CpuClock::kUnknown;
  cell.mem_overhead_kib.reset();
  cell.cpu_clock = obs.clock;
  cell.host_load = obs.host_load;
  cell.patch_mapped_kib = obs.mapped_kib;
  cell.island_kib = obs.island_kib;
}

// What the patch core's calls add up to.
struct CallSummary {
  bool refused = false;  // the first apply refused or rolled back: not hotpatchable
  bool failed = false;   // a later call failed, or the target died during one
};

// The first apply decides whether the patch is live-applicable at all; the
// later ones (alternations, repeats) must keep succeeding.
CallSummary JudgeCalls(const CellObservations& obs, metrics::CellResult& cell) {
  CallSummary sum;
  bool first_apply = true;
  cell.apply = ApplyResult::kNotRun;
  for (const PatchCall& call : obs.calls) {
    if (call.op == PatchCall::Op::kApply && call.exit_code == kHotpatchOk && call.pause_us) {
      cell.pause_us.push_back(*call.pause_us);
    }
    if (call.op == PatchCall::Op::kApply && first_apply) {
      first_apply = false;
      cell.apply = call.exit_code == kHotpatchOk           ? ApplyResult::kApplied
                   : call.exit_code == kHotpatchRefused    ? ApplyResult::kRefused
                   : call.exit_code == kHotpatchRolledBack ? ApplyResult::kRolledBack
                                                           : ApplyResult::kNotRun;
      if (call.exit_code == kHotpatchRefused || call.exit_code == kHotpatchRolledBack) {
        sum.refused = true;
        cell.apply_reason = FirstLine(call.message);
        cell.reasons.push_back(fmt::format(
            "not hotpatchable — needs a restart: apply {}: {}",
            call.exit_code == kHotpatchRefused ? "refused" : "rolled back", cell.apply_reason));
        continue;
      }
    }
    if (call.exit_code == kHotpatchOk) continue;
    sum.failed = true;
    if (call.exit_code == kHotpatchTargetGone) {
      cell.reasons.push_back(fmt::format("{}: the target died during the call: {}", OpName(call.op),
                                         FirstLine(call.message)));
    } else {
      cell.reasons.push_back(fmt::format("{} failed (hotpatch exit {}): {}", OpName(call.op),
                                         call.exit_code, FirstLine(call.message)));
    }
  }
  if (!cell.pause_us.empty()) cell.pause_median_us = metrics::Median(cell.pause_us);
  return sum;
}

std::string DescribeFigure(const metrics::Estimate& e, metrics::CpuClock clock) {
  std::string name(metrics::CpuClockName(clock));
  return fmt::format("cpu overhead {:+.2f}% (99.9% interval {:.2f}..{:.2f}%, {} pairs{}{})",
                     e.value, e.low, e.high, e.samples, name.empty() ? "" : ", ", name);
}

// Sets the native reference beside the VM's figure, or in its place when the
// two disagree (metrics::CrossCheckCpu); says which in the reasons.
void CrossCheckNative(const CellObservations& obs, metrics::CellResult& cell) {
  if (obs.clock == metrics::CpuClock::kNativeCpuTime) return;  // already native
  if (!obs.native_reference) {
    if (!obs.native_reference_note.empty())
      cell.reasons.push_back("native cross-check: none: " + obs.native_reference_note);
    return;
  }
  const metrics::Estimate vm = *cell.cpu_overhead_pct;
  const metrics::Estimate& native = *obs.native_reference;
  metrics::CrossCheck check = metrics::CrossCheckCpu(vm, native);
  if (metrics::JudgeNative(check)) {
    cell.cpu_overhead_pct = native;
    cell.cpu_clock = metrics::CpuClock::kNativeCpuTime;
    cell.cpu_reference_pct = vm;
    cell.cpu_reference_clock = obs.clock;
  } else {
    cell.cpu_reference_pct = native;
    cell.cpu_reference_clock = metrics::CpuClock::kNativeCpuTime;
  }
  cell.reasons.push_back(fmt::format(
      "native cross-check: {} ({}; {:.2f} pp wide) {} the VM's {} within {:.0f} pp: the {} "
      "figure is judged",
      metrics::CrossCheckName(check), DescribeFigure(native, metrics::CpuClock::kNativeCpuTime),
      native.high - native.low,
      check == metrics::CrossCheck::kAgree      ? "agrees with"
      : check == metrics::CrossCheck::kDisagree ? "does not agree with"
                                                : "cannot tell whether it agrees with",
      DescribeFigure(vm, obs.clock), metrics::kCrossCheckTolerancePp,
      metrics::JudgeNative(check) ? "native" : "VM"));
}

// The CPU figure from the window pairs, cross-checked against the native
// reference when there is one, judged by the one rule. A noisy figure is said
// in the reasons but fails nothing: the gate reports it too.
void CpuFigure(const CellObservations& obs, const CellRules& rules, metrics::CellResult& cell) {
  for (const Window& w : obs.windows) cell.cpu_windows.push_back(ToSample(w));
  cell.cpu_limit_pct = rules.cpu.limit_pct;
  cell.cpu_scenario_limit_pct = rules.scenario_cpu_limit_pct;
  metrics::PairedCosts pairs = PairedWindowCosts(obs.windows);
  if (pairs.unpatched.empty()) return;
  metrics::StoppingDecision d =
      metrics::DecideStopping(pairs.unpatched, pairs.patched, rules.cpu, /*budget_left=*/false);
  if (!d.estimate) return;
  cell.cpu_overhead_pct = d.estimate;
  CrossCheckNative(obs, cell);
  // The judged figure's outcome, by the rule DecideStopping applied to the
  // VM's: the gate re-judges the same stored figure the same way.
  const metrics::Estimate& e = *cell.cpu_overhead_pct;
  metrics::OverheadOutcome outcome =
      metrics::JudgeOverhead(e, rules.cpu.limit_pct, rules.cpu.judged_on);
  cell.cpu_outcome = outcome;
  std::string figure = DescribeFigure(e, cell.cpu_clock);
  if (outcome == metrics::OverheadOutcome::kAbove) {
    cell.reasons.push_back(fmt::format("{} above the {:.2f}% limit", figure, rules.cpu.limit_pct));
  } else if (outcome == metrics::OverheadOutcome::kNoisy && e.coverage > 0 &&
             e.coverage < metrics::kMinCoverage) {
    // Too few pairs for the interval asked for: its ends are the pairs' range.
    cell.reasons.push_back(fmt::format(
        "{} covers only {:.0f}% with {} pairs (a 99.9% interval needs at least 11): noisy, not "
        "judged (neither a pass nor a fail on CPU)",
        figure, 100 * e.coverage, e.samples));
  } else if (outcome == metrics::OverheadOutcome::kNoisy) {
    cell.reasons.push_back(fmt::format(
        "{} straddles the {:.2f}% limit: noisy, not judged (neither a pass nor a fail on CPU)",
        figure, rules.cpu.limit_pct));
  }
}

// patch.processes: all: how far the system-wide applies reached, and the
// processes that started while the patch was live and ran the on-disk code.
// A figure, not a failure: a fleet has such processes too.
void SystemWideFigure(const CellObservations& obs, metrics::CellResult& cell) {
  if (!obs.system_wide) return;
  const SystemWideObservations& sw = *obs.system_wide;
  std::string who;
  size_t listed = 0;
  for (const auto& [pid, comm] : sw.unpatched) {
    if (listed++ == 5) {
      who += fmt::format(", and {} more", sw.unpatched.size() - 5);
      break;
    }
    who += fmt::format("{}{} (pid {})", who.empty() ? ": " : ", ", comm, pid);
  }
  cell.reasons.push_back(fmt::format(
      "system-wide: up to {} process(es) patched per apply; {} process(es) started while the "
      "patch was live and ran unpatched{}",
      sw.most_patched, sw.unpatched.size(), who));
}

// PSS growth across the first apply; true when it breaks the limit.
bool MemoryFigure(const CellObservations& obs, const CellRules& rules, metrics::CellResult& cell) {
  if (!obs.pss_before_kib || !obs.pss_after_kib) return false;
  cell.mem_overhead_kib =
      static_cast<double>(*obs.pss_after_kib) - static_cast<double>(*obs.pss_before_kib);
  if (*cell.mem_overhead_kib <= rules.mem_overhead_kib) return false;
  cell.reasons.push_back(fmt::format("memory overhead {:.0f} KiB above the {:.0f} KiB limit",
                                     *cell.mem_overhead_kib, rules.mem_overhead_kib));
  return true;
}

// True when the median pause breaks the limit.
bool PauseOver(const CellRules& rules, metrics::CellResult& cell) {
  if (!cell.pause_median_us || *cell.pause_median_us <= rules.pause_us) return false;
  cell.reasons.push_back(fmt::format("pause {:.0f} us above the {:.0f} us limit",
                                     *cell.pause_median_us, rules.pause_us));
  return true;
}

}  // namespace

CellRules RulesFor(const Scenario& scenario, const metrics::Policy& policy) {
  CellRules r;
  r.scenario_cpu_limit_pct = scenario.limits.cpu_overhead_pct;
  r.cpu.limit_pct =
      metrics::EffectiveCpuLimit(policy.max_cpu_overhead_pct, scenario.limits.cpu_overhead_pct);
  r.cpu.judged_on = policy.cpu_overhead_judged_on;
  r.cpu.min_pairs = static_cast<size_t>(scenario.measure.alternations);
  r.cpu.max_pairs = static_cast<size_t>(scenario.measure.max_alternations);
  r.mem_overhead_kib =
      std::min(scenario.limits.mem_overhead_kib, policy.max_memory_overhead_mib * 1024);
  r.pause_us = std::min(scenario.limits.pause_us, policy.max_pause_ms * 1000);
  return r;
}

metrics::PairedCosts PairedWindowCosts(const std::vector<Window>& windows) {
  std::vector<metrics::WindowSample> samples;
  samples.reserve(windows.size());
  for (const Window& w : windows) samples.push_back(ToSample(w));
  return metrics::PairAdjacentWindows(samples);
}

void ComputeFigures(const CellObservations& obs, const CellRules& rules,
                    metrics::CellResult& cell) {
  ResetFigures(obs, cell);
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
  CallSummary calls = JudgeCalls(obs, cell);
  SystemWideFigure(obs, cell);
  bool failed = calls.failed;
  for (const std::string& p : obs.problems) {
    failed = true;
    cell.reasons.push_back(p);
  }
  if (obs.last_stats && obs.last_stats->errors > 0) {
    failed = true;
    cell.reasons.push_back(
        fmt::format("the target counted {} wrong results", obs.last_stats->errors));
  }
  CpuFigure(obs, rules, cell);
  bool mem_over = MemoryFigure(obs, rules, cell);
  bool pause_over = PauseOver(rules, cell);
  if (obs.semantic == metrics::SemanticVerdict::kFail) {
    cell.reasons.push_back("the semantic check found an undeclared divergence");
  }

  if (!cell.crashes.empty() || failed || OverheadFlagged(cell) || mem_over || pause_over ||
      obs.semantic == metrics::SemanticVerdict::kFail) {
    cell.verdict = MVerdict::kFail;
  } else if (calls.refused) {
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

bool OverheadFlagged(const metrics::CellResult& cell) {
  return cell.cpu_outcome == metrics::OverheadOutcome::kAbove;
}

bool MetExpectation(const metrics::CellResult& cell, const ExpectSpec& expect,
                    std::vector<std::string>& why_not) {
  why_not.clear();
  bool overhead_flagged = OverheadFlagged(cell);
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

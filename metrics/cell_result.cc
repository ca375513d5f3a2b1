#include "metrics/cell_result.h"

#include <array>
#include <utility>

namespace patchlab::metrics {
namespace {

template <typename E, size_t N>
Result<E> ParseName(std::string_view what, std::string_view name,
                    const std::array<std::pair<E, std::string_view>, N>& table) {
  std::string allowed;
  for (const auto& [value, text] : table) {
    if (text == name) return value;
    allowed += (allowed.empty() ? "" : ", ") + std::string(text);
  }
  return Fail(ErrorCode::kInvalidArgument, "unknown {} '{}' (expected one of: {})", what, name,
              allowed);
}

template <typename E, size_t N>
std::string_view NameOf(E value, const std::array<std::pair<E, std::string_view>, N>& table) {
  for (const auto& [v, text] : table) {
    if (v == value) return text;
  }
  std::abort();  // every enumerator is in its table
}

constexpr std::array<std::pair<Verdict, std::string_view>, 4> kVerdicts{{
    {Verdict::kPass, "pass"},
    {Verdict::kFail, "fail"},
    {Verdict::kNotHotpatchable, "not-hotpatchable"},
    {Verdict::kInfraError, "infra-error"},
}};
constexpr std::array<std::pair<ApplyResult, std::string_view>, 4> kApplyResults{{
    {ApplyResult::kApplied, "applied"},
    {ApplyResult::kRefused, "refused"},
    {ApplyResult::kRolledBack, "rolled-back"},
    {ApplyResult::kNotRun, "not-run"},
}};
constexpr std::array<std::pair<CrashKind, std::string_view>, 11> kCrashKinds{{
    {CrashKind::kWorkloadSignal, "workload-signal"},
    {CrashKind::kWorkloadExit, "workload-exit"},
    {CrashKind::kSegfault, "segfault"},
    {CrashKind::kTrap, "trap"},
    {CrashKind::kGpf, "gpf"},
    {CrashKind::kOops, "oops"},
    {CrashKind::kBug, "bug"},
    {CrashKind::kPanic, "panic"},
    {CrashKind::kOom, "oom"},
    {CrashKind::kVmPanic, "vm-panic"},
    {CrashKind::kLostHeartbeat, "lost-heartbeat"},
}};
constexpr std::array<std::pair<SemanticVerdict, std::string_view>, 4> kSemantic{{
    {SemanticVerdict::kNotRun, "not-run"},
    {SemanticVerdict::kPass, "pass"},
    {SemanticVerdict::kFail, "fail"},
    {SemanticVerdict::kInconclusive, "inconclusive"},
}};
constexpr std::array<std::pair<RunStatus, std::string_view>, 4> kRunStatuses{{
    {RunStatus::kRunning, "running"},
    {RunStatus::kComplete, "complete"},
    {RunStatus::kIncomplete, "incomplete"},
    {RunStatus::kFailed, "failed"},
}};

constexpr std::array<std::pair<CpuClock, std::string_view>, 4> kCpuClocks{{
    {CpuClock::kUnknown, ""},
    {CpuClock::kGuestInstructions, "guest-instructions"},
    {CpuClock::kGuestCpuTime, "guest-cpu-time"},
    {CpuClock::kNativeCpuTime, "native-cpu-time"},
}};

}  // namespace

std::string_view CpuClockName(CpuClock c) { return NameOf(c, kCpuClocks); }
Result<CpuClock> ParseCpuClock(std::string_view name) {
  return ParseName("CPU clock", name, kCpuClocks);
}

std::string_view VerdictName(Verdict v) { return NameOf(v, kVerdicts); }
Result<Verdict> ParseVerdict(std::string_view name) {
  return ParseName("verdict", name, kVerdicts);
}
std::string_view ApplyResultName(ApplyResult a) { return NameOf(a, kApplyResults); }
Result<ApplyResult> ParseApplyResult(std::string_view name) {
  return ParseName("apply result", name, kApplyResults);
}
std::string_view CrashKindName(CrashKind k) { return NameOf(k, kCrashKinds); }
Result<CrashKind> ParseCrashKind(std::string_view name) {
  return ParseName("crash kind", name, kCrashKinds);
}
std::string_view SemanticVerdictName(SemanticVerdict s) { return NameOf(s, kSemantic); }
Result<SemanticVerdict> ParseSemanticVerdict(std::string_view name) {
  return ParseName("semantic verdict", name, kSemantic);
}
std::string_view RunStatusName(RunStatus s) { return NameOf(s, kRunStatuses); }
Result<RunStatus> ParseRunStatus(std::string_view name) {
  return ParseName("run status", name, kRunStatuses);
}

std::string CellKey::ToString() const {
  return fmt::format("{}/{} on {} x {} x {}", scenario, patch_id, image, cpu, workload);
}

int CellResult::TotalCrashes() const {
  int total = 0;
  for (const auto& [kind, count] : crashes) total += count;
  return total;
}

}  // namespace patchlab::metrics

#include "metrics/cpu_cross_check.h"

#include <cstdlib>

#include "base/error.h"

namespace patchlab::metrics {

std::string_view CrossCheckName(CrossCheck c) {
  switch (c) {
    case CrossCheck::kAgree:
      return "agree";
    case CrossCheck::kDisagree:
      return "disagree";
    case CrossCheck::kUnresolved:
      return "unresolved";
  }
  std::abort();
}

CrossCheck CrossCheckCpu(const Estimate& vm, const Estimate& native) {
  // Intervals, not point estimates: two noisy medians more than 1 pp apart
  // say nothing when their intervals overlap.
  const bool apart = native.low > vm.high + kCrossCheckTolerancePp ||
                     native.high < vm.low - kCrossCheckTolerancePp;
  if (apart && native.high - native.low <= kCrossCheckMaxNativeWidthPp) {
    return CrossCheck::kDisagree;
  }
  if (native.low >= vm.low - kCrossCheckTolerancePp &&
      native.high <= vm.high + kCrossCheckTolerancePp) {
    return CrossCheck::kAgree;
  }
  return CrossCheck::kUnresolved;
}

std::optional<CrossCheck> CpuCrossCheckOf(const CellResult& cell) {
  if (!cell.cpu_overhead_pct || !cell.cpu_reference_pct) return std::nullopt;
  bool judged_native = cell.cpu_clock == CpuClock::kNativeCpuTime;
  bool beside_native = cell.cpu_reference_clock == CpuClock::kNativeCpuTime;
  if (judged_native == beside_native) return std::nullopt;
  const Estimate& vm = judged_native ? *cell.cpu_reference_pct : *cell.cpu_overhead_pct;
  const Estimate& native = judged_native ? *cell.cpu_overhead_pct : *cell.cpu_reference_pct;
  return CrossCheckCpu(vm, native);
}

std::string DescribeCpuReference(const CellResult& cell) {
  if (!cell.cpu_reference_pct) return "";
  const Estimate& e = *cell.cpu_reference_pct;
  std::string clock(CpuClockName(cell.cpu_reference_clock));
  std::string out =
      fmt::format("beside it: {} {:+.2f}% [{:.2f}, {:.2f}] ({} pairs)",
                  clock.empty() ? "clock not recorded" : clock, e.value, e.low, e.high, e.samples);
  if (auto check = CpuCrossCheckOf(cell))
    out += fmt::format(", cross-check {}", CrossCheckName(*check));
  return out;
}

}  // namespace patchlab::metrics

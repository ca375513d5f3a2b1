// The native cross-check of a VM's CPU figure. An instruction-counting guest
// (QEMU -icount) gives a precise figure the host's load cannot move, but it
// counts instructions, not time: a patch whose cost lies in an indirect jump,
// a far page or a cache miss costs more on hardware than its instruction count
// says. So the lab also measures the same target and patch natively on its own
// host (CPU time, the same ABBA windows and statistics) and sets the two side
// by side:
//
//   agree       the native interval lies within kCrossCheckTolerancePp of the
//               VM's interval on both sides: the VM figure is judged
//   disagree    the two intervals are more than kCrossCheckTolerancePp apart
//               and the native one is at most kCrossCheckMaxNativeWidthPp
//               wide: the native figure is judged, the VM's reported beside it
//   unresolved  neither can be said (the native interval is too wide): the VM
//               figure is judged, and the report shows how wide the native is
//
// Only a disagreement the intervals resolve moves the judgement to the native
// figure, so noise on a busy lab host cannot swap a precise figure for a noisy
// one; the cross-check is a function of the two stored figures alone, so every
// reader of the database reaches the same answer.
//
// Thread-safety: pure functions on values.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "metrics/cell_result.h"
#include "metrics/stats.h"

namespace patchlab::metrics {

// How far (percentage points) a VM figure may lie from the native one and
// still count as the same figure.
inline constexpr double kCrossCheckTolerancePp = 1.0;

// The widest native interval that may overrule the VM's figure. A native
// figure measured while neighbours load the host can come out resolved but
// far off and wide (kv-parse-fix at -10.75%, interval -26.82..-2.52, beside
// +1.17% in instructions, in a ci/lab run beside a full test run): it says
// nothing at the 1 pp scale the check is about.
inline constexpr double kCrossCheckMaxNativeWidthPp = 4.0;

enum class CrossCheck { kAgree, kDisagree, kUnresolved };
std::string_view CrossCheckName(CrossCheck c);  // "agree" "disagree" "unresolved"

// Compares `vm` with `native` (both overheads in percent with their intervals).
CrossCheck CrossCheckCpu(const Estimate& vm, const Estimate& native);

// Whether the native figure is the one to judge: only when the two disagree.
inline bool JudgeNative(CrossCheck c) { return c == CrossCheck::kDisagree; }

// The cross-check of a stored cell: its judged figure against the one beside
// it, whichever of the two is native; nullopt unless one of them is native
// and the other is not.
std::optional<CrossCheck> CpuCrossCheckOf(const CellResult& cell);

// The figure beside the judged one for reports and the gate, e.g. "beside it:
// native-cpu-time +2.10% [1.20, 3.05] (28 pairs), cross-check unresolved";
// empty when the cell has none.
std::string DescribeCpuReference(const CellResult& cell);

}  // namespace patchlab::metrics

// WindowSample: one measurement window of a target, reduced to what the
// overhead statistics need: whether the patch was live, the CPU it cost
// (nanoseconds of CPU time, or instructions under a counting clock) and the
// work it did (operations, requests, bytes: any unit, the same in every
// window of a cell). A labstats target and a black-box program measured from
// /proc both end up here, so both are judged by the same statistics.
//
// Thread-safety: plain values and pure functions.
#pragma once

#include <vector>

namespace patchlab::metrics {

struct WindowSample {
  bool patched = false;
  double cost = 0;  // CPU spent in the window, in the figure's clock
  double work = 0;  // units of work completed in the window
  // Cost per unit of work; 0 when the window did no work.
  double CostPerWork() const { return work > 0 ? cost / work : 0; }
};

// Costs per unit of work of window pairs: two windows measured back to back
// with the patch in opposite states (AB or BA), each window in at most one
// pair, in measured order. Windows without work or cost break a pair.
struct PairedCosts {
  std::vector<double> unpatched;
  std::vector<double> patched;
};
PairedCosts PairAdjacentWindows(const std::vector<WindowSample>& windows);

}  // namespace patchlab::metrics

// The measurement loop both cell sequences share (labstats targets in
// runner_cell.cc, real applications in runner_app_cell.cc): window pairs in
// randomized ABBA blocks, each block "unpatched, patched, patched, unpatched"
// or its mirror, until metrics::DecideStopping says the CPU figure is within
// or above its limit, or the pair budget, the workload's or the cell's time is
// spent. One loop, so a labstats figure and a black-box figure are measured
// and judged by the one rule (metrics/overhead_rule.h).
//
// The sequence supplies the steps: how to bring the patch on or off, how to
// measure one window (appending it to the windows the loop reads), and
// whether another look still fits in its time.
//
// Thread-safety: pure control flow; the steps decide.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "harness/lab/internal/runner_figures.h"
#include "metrics/overhead_rule.h"

namespace patchlab::harness::internal {

// Whether ABBA block `block` starts with the patched window: the first block
// starts unpatched when `first_unpatched` (the patch is applied after a
// warm-up), later ones by a coin seeded with `seed` (the cell and the run), so
// a run is reproducible.
bool AbbaBlockStartsPatched(uint64_t seed, size_t block, bool first_unpatched);

// The order of the windows of `blocks` ABBA blocks: the patched flag of every
// window, 4 per block.
std::vector<bool> AbbaSchedule(uint64_t seed, size_t blocks, bool first_unpatched);

struct AbbaSteps {
  // Brings the patch to the state asked for (a no-op when it is there);
  // false ends the measurement (a refused apply, a failed revert).
  std::function<bool(bool patched)> set_patched;
  // Measures one window and appends it to the windows passed to
  // MeasureAbbaBlocks.
  std::function<void(bool patched)> measure_window;
  // Whether `step` more pairs fit in what is left of the time.
  std::function<bool()> budget_left;
  // Called after every block (a host-load sample); may be empty.
  std::function<void()> after_block;
};

// Measures blocks until `rule` is satisfied: at least rule.min_pairs pairs,
// then rule.step more per look while the interval straddles the limit, up to
// rule.max_pairs, or fewer when budget_left() says no at a look. Returns false when
// set_patched failed (the caller's observations say why), true otherwise.
bool MeasureAbbaBlocks(const metrics::StoppingRule& rule, uint64_t seed, bool first_unpatched,
                       const std::vector<Window>& windows, const AbbaSteps& steps);

}  // namespace patchlab::harness::internal

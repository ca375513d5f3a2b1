#include "harness/lab/internal/abba_measurement.h"

#include <algorithm>

namespace patchlab::harness::internal {

bool AbbaBlockStartsPatched(uint64_t seed, size_t block, bool first_unpatched) {
  if (block == 0) return !first_unpatched;
  // SplitMix64 of (seed, block): a fixed, well-mixed coin per block.
  uint64_t z = seed + 0x9e3779b97f4a7c15ULL * (block + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return ((z ^ (z >> 31)) & 1) != 0;
}

std::vector<bool> AbbaSchedule(uint64_t seed, size_t blocks, bool first_unpatched) {
  std::vector<bool> out;
  for (size_t b = 0; b < blocks; ++b) {
    bool p = AbbaBlockStartsPatched(seed, b, first_unpatched);
    for (bool w : {p, !p, !p, p}) out.push_back(w);
  }
  return out;
}

bool MeasureAbbaBlocks(const metrics::StoppingRule& rule, uint64_t seed, bool first_unpatched,
                       const std::vector<Window>& windows, const AbbaSteps& steps) {
  size_t target = std::max<size_t>(rule.min_pairs, 1);
  for (size_t block = 0;; ++block) {
    bool starts_patched = AbbaBlockStartsPatched(seed, block, first_unpatched);
    for (bool patched : {starts_patched, !starts_patched, !starts_patched, starts_patched}) {
      if (!steps.set_patched(patched)) return false;
      steps.measure_window(patched);
    }
    if (steps.after_block) steps.after_block();
    metrics::PairedCosts pairs = PairedWindowCosts(windows);
    if (pairs.unpatched.size() < target) continue;
    metrics::StoppingDecision d =
        metrics::DecideStopping(pairs.unpatched, pairs.patched, rule, steps.budget_left());
    if (!d.measure_more) return true;
    target = pairs.unpatched.size() + rule.step;
  }
}

}  // namespace patchlab::harness::internal

#include "metrics/window_sample.h"

#include <cstddef>

namespace patchlab::metrics {

PairedCosts PairAdjacentWindows(const std::vector<WindowSample>& windows) {
  PairedCosts out;
  size_t i = 0;
  while (i + 1 < windows.size()) {
    const WindowSample& a = windows[i];
    const WindowSample& b = windows[i + 1];
    bool usable = a.patched != b.patched && a.CostPerWork() > 0 && b.CostPerWork() > 0;
    if (!usable) {
      ++i;
      continue;
    }
    const WindowSample& u = a.patched ? b : a;
    const WindowSample& p = a.patched ? a : b;
    out.unpatched.push_back(u.CostPerWork());
    out.patched.push_back(p.CostPerWork());
    i += 2;
  }
  return out;
}

}  // namespace patchlab::metrics

// The crash classifier over kernel log text (harness/vm/crash_classifier.h):
// /dev/kmsg records the agent relays and the console log QEMU keeps, both
// written by a guest running the patch under test. One crash per line at most.
#include <algorithm>

#include "fuzz/fuzz_target.h"
#include "harness/vm/crash_classifier.h"

PATCHLAB_FUZZ_TARGET(kernel_log) {
  std::string_view text = patchlab::fuzz::AsText(data, size);
  auto crashes = patchlab::harness::ClassifyKernelLog(text);
  FUZZ_CHECK(crashes.size() <= static_cast<size_t>(std::count(text.begin(), text.end(), '\n')) + 1);
  for (const auto& crash : crashes) FUZZ_CHECK(crash.pid >= 0);
  return 0;
}

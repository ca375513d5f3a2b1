// The scenario reader (harness/lab/scenario.h), semantic section included, as
// if the text were scenarios/kv-parse-fix/scenario.yaml: the bundled
// scenario's sources exist there, so a seed that keeps them valid reaches the
// end of the checks. Every refusal must name the file.
#include <string>

#include "fuzz/fuzz_target.h"
#include "harness/lab/scenario.h"

PATCHLAB_FUZZ_TARGET(scenario) {
  static const std::string kFile =
      std::string(PATCHLAB_SOURCE_DIR) + "/scenarios/kv-parse-fix/scenario.yaml";
  auto scenario =
      patchlab::harness::ParseScenario(std::string(patchlab::fuzz::AsText(data, size)), kFile);
  if (!scenario) {
    FUZZ_CHECK(scenario.error().ToString().find(kFile) != std::string::npos);
    return 0;
  }
  FUZZ_CHECK(!scenario->patches.empty() && !scenario->workloads.empty());
  FUZZ_CHECK(scenario->timeout.count() >= 1000);
  return 0;
}

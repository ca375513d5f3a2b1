// The release policy reader of `patchlab gate --policy` (metrics/policy.h).
// What it accepts always has a ring; every refusal names the file.
#include <string>

#include "fuzz/fuzz_target.h"
#include "metrics/policy.h"

PATCHLAB_FUZZ_TARGET(policy) {
  auto policy = patchlab::metrics::ParsePolicy(std::string(patchlab::fuzz::AsText(data, size)),
                                               "fuzz-policy.yaml");
  if (!policy) {
    FUZZ_CHECK(policy.error().ToString().find("fuzz-policy.yaml") != std::string::npos);
    return 0;
  }
  FUZZ_CHECK(!policy->rings.empty());
  for (const auto& ring : policy->rings) FUZZ_CHECK(policy->FindRing(ring.name) != nullptr);
  return 0;
}

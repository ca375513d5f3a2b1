// hotpatch's saved patch stack (patchcore/patch_state.h, state.json): read by
// every status, verify, apply and revert. A state that decodes must encode and
// decode again to the same state, and the lookups over it must hold up.
#include "fuzz/fuzz_target.h"
#include "patchcore/patch_state.h"

PATCHLAB_FUZZ_TARGET(state) {
  using patchlab::patchcore::ProcessState;
  auto state = ProcessState::FromJson(patchlab::fuzz::AsText(data, size), "fuzz-state.json");
  if (!state) {
    FUZZ_CHECK(state.error().ToString().find("fuzz-state.json") != std::string::npos);
    return 0;
  }
  const std::string json = state->ToJson();
  auto again = ProcessState::FromJson(json, "fuzz-round-trip");
  FUZZ_CHECK(again.has_value());
  FUZZ_CHECK(again->ToJson() == json);
  (void)state->MaxSeq();
  for (const auto& site : state->sites) {
    FUZZ_CHECK(state->FindSite(site.entry) != nullptr);
    (void)state->LiveTarget(site.entry);
  }
  for (const auto& patch : state->patches) FUZZ_CHECK(state->FindPatch(patch.id) != nullptr);
  return 0;
}

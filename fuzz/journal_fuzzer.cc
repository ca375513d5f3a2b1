// hotpatch's write-ahead journals (patchcore/journal.h): journal.json, which
// `hotpatch recover` reads after a patcher died, and park.json (the spin traps
// of a stop in progress, same format). A journal that decodes must encode and
// decode again to the same journal; the state it would commit is read as
// recover reads it.
#include "fuzz/fuzz_target.h"
#include "patchcore/journal.h"
#include "patchcore/patch_state.h"

PATCHLAB_FUZZ_TARGET(journal) {
  using patchlab::patchcore::Journal;
  auto journal = Journal::FromJson(patchlab::fuzz::AsText(data, size), "fuzz-journal.json");
  if (!journal) {
    FUZZ_CHECK(journal.error().ToString().find("fuzz-journal.json") != std::string::npos);
    return 0;
  }
  const std::string json = journal->ToJson();
  auto again = Journal::FromJson(json, "fuzz-round-trip");
  FUZZ_CHECK(again.has_value());
  FUZZ_CHECK(again->ToJson() == json);
  if (!journal->new_state.empty()) {
    (void)patchlab::patchcore::ProcessState::FromJson(journal->new_state, "fuzz-new-state");
  }
  return 0;
}

// hotpatch's state.json, journal.json and park.json readers on damaged files:
// each damage the fuzzers found (fuzz/regressions/state, .../journal) ends in
// an error that names the file and the field.
#include <gtest/gtest.h>

#include <string>

#include "patchcore/journal.h"
#include "patchcore/patch_state.h"
#include "tests/support/status_matchers.h"

namespace patchlab::patchcore {
namespace {

using ::testing::HasSubstr;

// A journal as `hotpatch revert` writes it, with `size` spliced in.
std::string JournalWithUnmapSize(std::string_view size) {
  return fmt::format(R"({{"op": "revert", "patch_id": "fix-3", "serial": 3,
    "writes": [{{"addr": "0x55e0c3ef9870", "old": "e90b5effff", "new": "e9cbfeffff"}}],
    "mapped": [], "to_unmap": [{{"addr": "0x55e0c3eef000", "size": {}}}], "new_state": ""}})",
                     size);
}

TEST(StateFiles, JournalRoundTrips) {
  auto journal = Journal::FromJson(JournalWithUnmapSize("4096"), "journal.json");
  ASSERT_OK(journal);
  ASSERT_EQ(journal->to_unmap.size(), 1u);
  EXPECT_EQ(journal->to_unmap[0].size(), 4096u);
  auto again = Journal::FromJson(journal->ToJson(), "again.json");
  ASSERT_OK(again);
  EXPECT_EQ(again->ToJson(), journal->ToJson());
}

// Found by fuzz/journal_fuzzer.cc: a size too large for an integer was read
// through a float-to-integer cast (undefined behaviour, caught by UBSan).
TEST(StateFiles, JournalSizeThatIsNotAnIntegerIsAnError) {
  for (std::string_view size : {"1228818446744073709551616", "1e30", "1.5", "\"4096\""}) {
    auto journal = Journal::FromJson(JournalWithUnmapSize(size), "/run/hotpatch/1-2/journal.json");
    ASSERT_FALSE(journal.has_value()) << size;
    EXPECT_EQ(journal.error().code(), ErrorCode::kParse);
    EXPECT_THAT(journal.error().ToString(),
                HasSubstr("/run/hotpatch/1-2/journal.json: field 'size'"))
        << size;
  }
}

TEST(StateFiles, StateNumbersMustBeIntegersOfTheirWidth) {
  const std::string base =
      R"({"pid": PID, "start_time": 5, "serial": 1, "patches": [], "sites": [], "islands": []})";
  auto with_pid = [&](std::string_view pid) {
    std::string s = base;
    s.replace(s.find("PID"), 3, pid);
    return ProcessState::FromJson(s, "state.json");
  };
  ASSERT_OK(with_pid("1234"));
  for (std::string_view pid : {"4294967296", "1e300", "-1.0e2"}) {
    auto state = with_pid(pid);
    ASSERT_FALSE(state.has_value()) << pid;
    EXPECT_THAT(state.error().ToString(), HasSubstr("state.json: field 'pid'")) << pid;
  }
}

TEST(StateFiles, DeeplyNestedOrBrokenJsonNamesTheFileAndWhere) {
  auto deep = ProcessState::FromJson(std::string(100000, '['), "state.json");
  ASSERT_FALSE(deep.has_value());
  EXPECT_THAT(deep.error().ToString(), HasSubstr("state.json: byte 64: nested deeper"));
  auto broken = Journal::FromJson("{\"op\": \"apply\",\n \"serial\": }", "park.json");
  ASSERT_FALSE(broken.has_value());
  EXPECT_THAT(broken.error().ToString(), HasSubstr("park.json: parse error at line 2"));
}

}  // namespace
}  // namespace patchlab::patchcore

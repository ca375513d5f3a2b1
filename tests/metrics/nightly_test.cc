// ci/nightly end to end over two nights with the real `patchlab run --backend
// host`: the pricer service of a scratch scenario is patched live on this
// host's processes. The first night's patch is correct; before the second the
// patch's source turns into the crashing one under the same ids, as a bad
// change to a patch would. ci/nightly must exit 0, then 1 with the regression
// named, and write every report both nights.
#include <gtest/gtest.h>
#include <unistd.h>

#include "base/file_util.h"
#include "base/subprocess.h"
#include "tests/metrics/lab_scenario.h"
#include "tests/metrics/test_util.h"
#include "tests/support/status_matchers.h"

using ::testing::HasSubstr;

namespace patchlab::metrics {
namespace {

using testing::PricerPatch;
using testing::ScratchDir;
using testing::WritePricerScenario;

class Nightly : public ::testing::Test {
 protected:
  SubprocessResult Night(PricerPatch patch) {
    std::filesystem::path scenario = WritePricerScenario(dir_ / "scenarios", patch);
    SubprocessOptions o;
    o.argv = {"bash", PATCHLAB_SOURCE_DIR "/ci/nightly"};
    o.env_set = {{"PATCHLAB_BIN", PATCHLAB_BIN},
                 {"PATCHLAB_DB", (dir_ / "lab.db").string()},
                 {"PATCHLAB_OUT", (dir_ / "out").string()},
                 {"PATCHLAB_SCENARIOS", scenario.string()},
                 {"PATCHLAB_RUN_ARGS", "--backend host --key-dir " + (dir_ / "keys").string()}};
    o.stderr_to_stdout = true;
    o.timeout = std::chrono::seconds(240);
    auto r = RunSubprocess(o);
    EXPECT_OK(r);
    return r.value_or(SubprocessResult{});
  }

  void ExpectEveryReport(const std::string& night) {
    for (const char* file : {"report.html", "report.junit.xml", "report.md", "report.json",
                             "report.prom", "regressions.txt", "regressions.json"}) {
      std::error_code ec;
      EXPECT_GT(std::filesystem::file_size(dir_ / "out" / file, ec), 0u) << night << ": " << file;
      std::filesystem::remove(dir_ / "out" / file, ec);  // the next night must write it again
    }
  }

  ScratchDir dir_;
};

TEST_F(Nightly, AGoodNightThenACrashingPatchIsARegression) {
  if (geteuid() != 0) GTEST_SKIP() << "patching host processes needs root (ptrace of a sibling)";
  auto first = Night(PricerPatch::kGood);
  ASSERT_EQ(first.status.code, 0) << first.stdout_data;
  EXPECT_THAT(first.stdout_data, HasSubstr("first nightly run")) << first.stdout_data;
  ExpectEveryReport("night 1");

  auto second = Night(PricerPatch::kCrash);
  EXPECT_EQ(second.status.code, 1) << second.stdout_data;
  EXPECT_THAT(second.stdout_data, HasSubstr("REGRESSION")) << second.stdout_data;
  auto regressions = ReadFile(dir_ / "out" / "regressions.txt");
  ASSERT_TRUE(regressions.has_value());
  EXPECT_THAT(*regressions, HasSubstr("run 2 against run 1")) << *regressions;
  EXPECT_THAT(*regressions, HasSubstr("[new-crash]")) << *regressions;
  EXPECT_THAT(*regressions, HasSubstr("pricer-table")) << *regressions;
  auto junit = ReadFile(dir_ / "out" / "report.junit.xml");
  ASSERT_TRUE(junit.has_value());
  EXPECT_THAT(*junit, HasSubstr("<failure")) << *junit;
  ExpectEveryReport("night 2");

  // Both nights are in the database, labelled, with the crash of the second.
  auto db = CompatDb::OpenExisting(dir_ / "lab.db");
  ASSERT_OK(db);
  auto runs = db->ListRuns(RunFilter{.label = "nightly"});
  ASSERT_TRUE(runs.has_value());
  ASSERT_EQ(runs->size(), 2u);
  auto cells = db->CellsOfRun((*runs)[0].id);
  ASSERT_TRUE(cells.has_value());
  ASSERT_EQ(cells->size(), 1u);
  EXPECT_EQ((*cells)[0].verdict, Verdict::kFail);
  EXPECT_GE((*cells)[0].TotalCrashes(), 1);
}

TEST_F(Nightly, ALabThatRecordsNothingIsAnError) {
  // The patch does not compile: `patchlab run` stops before recording a run.
  auto r = Night(PricerPatch::kBroken);
  EXPECT_EQ(r.status.code, 2) << r.stdout_data;
  EXPECT_THAT(r.stdout_data, HasSubstr("recorded no run")) << r.stdout_data;
  EXPECT_THAT(r.stdout_data, HasSubstr("price_table.c")) << r.stdout_data;
}

}  // namespace
}  // namespace patchlab::metrics

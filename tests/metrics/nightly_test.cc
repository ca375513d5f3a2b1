// ci/nightly end to end over three nights. `patchlab run` is replaced by
// lab_stand_in (no VMs); every other subcommand is the real patchlab binary.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "base/file_util.h"
#include "base/subprocess.h"
#include "tests/metrics/test_util.h"

namespace patchlab::metrics {
namespace {

using testing::ScratchDir;

class Nightly : public ::testing::Test {
 protected:
  void SetUp() override {
    wrapper_ = dir_ / "patchlab";
    ASSERT_TRUE(WriteFileAtomic(
                    wrapper_,
                    fmt::format("#!/bin/sh\nif [ \"$1\" = run ]; then shift; exec {} \"$@\"; fi\n"
                                "exec {} \"$@\"\n",
                                LAB_STAND_IN_BIN, PATCHLAB_BIN),
                    0755)
                    .has_value());
  }
  SubprocessResult Night(const std::string& mode) {
    SubprocessOptions o;
    o.argv = {"bash", PATCHLAB_SOURCE_DIR "/ci/nightly"};
    o.env_set = {{"PATCHLAB_BIN", wrapper_.string()},
                 {"PATCHLAB_DB", (dir_ / "lab.db").string()},
                 {"PATCHLAB_OUT", (dir_ / "out").string()},
                 {"PATCHLAB_STAND_IN_MODE", mode}};
    o.stderr_to_stdout = true;
    o.timeout = std::chrono::seconds(120);
    auto r = RunSubprocess(o);
    EXPECT_TRUE(r.has_value()) << r.error().ToString();
    return r.value_or(SubprocessResult{});
  }

  ScratchDir dir_;
  std::filesystem::path wrapper_;
};

TEST_F(Nightly, FirstNightPassesThenARegressionFails) {
  auto first = Night("good");
  EXPECT_EQ(first.status.code, 0) << first.stdout_data;
  EXPECT_NE(first.stdout_data.find("first nightly run"), std::string::npos) << first.stdout_data;
  for (const char* file : {"report.html", "report.junit.xml", "report.md", "report.json",
                           "report.prom", "regressions.txt", "regressions.json"}) {
    EXPECT_TRUE(std::filesystem::exists(dir_ / "out" / file)) << file;
  }

  auto second = Night("good");
  EXPECT_EQ(second.status.code, 0) << second.stdout_data;
  EXPECT_NE(second.stdout_data.find("no regression: run 2 against run 1"), std::string::npos)
      << second.stdout_data;

  auto third = Night("crash");
  EXPECT_EQ(third.status.code, 1) << third.stdout_data;
  auto regressions = ReadFile(dir_ / "out" / "regressions.txt");
  ASSERT_TRUE(regressions.has_value());
  EXPECT_NE(regressions->find("run 3 against run 2"), std::string::npos) << *regressions;
  EXPECT_NE(regressions->find("[new-crash]: segfault 0 -> 1"), std::string::npos) << *regressions;
  auto junit = ReadFile(dir_ / "out" / "report.junit.xml");
  EXPECT_NE(junit->find("<failure"), std::string::npos);
}

TEST_F(Nightly, ALabThatRecordsNothingIsAnError) {
  auto r = Night("none");
  EXPECT_EQ(r.status.code, 2) << r.stdout_data;
  EXPECT_NE(r.stdout_data.find("recorded no run"), std::string::npos) << r.stdout_data;
}

}  // namespace
}  // namespace patchlab::metrics

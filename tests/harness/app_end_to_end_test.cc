// A real application in a real Debian system, end to end: `patchlab images
// build debian12-apps` (mmdebstrap the first time: minutes), then `patchlab
// run scenarios/nginx-gzip-bad` on it, one cell. Debian's nginx (master and
// workers) serves gzip pages under ab while libz's crc32_z is replaced in every
// nginx process by one wrong in a bit: nothing crashes, and the lab must still
// fail the patch, on the check's wrong results, with the application recorded.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "base/subprocess.h"
#include "metrics/compat_db.h"
#include "tests/support/status_matchers.h"

namespace patchlab {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::StartsWith;

TEST(AppEndToEnd, NginxWithAWrongCrc32IsCaughtByItsCheck) {
  if (::access("/usr/bin/qemu-system-x86_64", X_OK) != 0)
    GTEST_SKIP() << "qemu-system-x86_64 is not installed (bash ci/setup)";
  if (::access("/usr/bin/mmdebstrap", X_OK) != 0)
    GTEST_SKIP() << "mmdebstrap is not installed (bash ci/setup)";
  if (::geteuid() != 0) GTEST_SKIP() << "mmdebstrap --mode=root and the lab cache need root";
  fs::path dir = fs::temp_directory_path() / fmt::format("apps_e2e.{}", ::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);

  // The image first, on its own: a fresh machine runs mmdebstrap here.
  SubprocessOptions build;
  build.argv = {PATCHLAB_BIN, "images", "build", "debian12-apps"};
  build.cwd = PATCHLAB_SOURCE_DIR;
  build.timeout = std::chrono::minutes(25);
  auto built = RunSubprocess(std::move(build));
  ASSERT_OK(built);
  ASSERT_TRUE(built->status.Success()) << built->stdout_data << built->stderr_data;

  SubprocessOptions run;
  run.argv = {PATCHLAB_BIN,
              "run",
              "scenarios/nginx-gzip-bad",
              "--images",
              "debian12-apps",
              "--json",
              "--db",
              (dir / "lab.db").string(),
              "--out",
              (dir / "out").string(),
              "--key-dir",
              (dir / "keys").string()};
  run.cwd = PATCHLAB_SOURCE_DIR;
  run.timeout = std::chrono::minutes(10);
  auto r = RunSubprocess(std::move(run));
  ASSERT_OK(r);
  auto json = nlohmann::json::parse(r->stdout_data, nullptr, false);
  ASSERT_TRUE(json.is_object()) << r->stdout_data << r->stderr_data;
  ASSERT_EQ(json["cells"].size(), 1u) << json.dump(2);
  const auto& cell = json["cells"][0];
  EXPECT_EQ(r->status.code, 0) << json.dump(2) << r->stderr_data;
  EXPECT_EQ(cell["image"], "debian12-apps");
  EXPECT_EQ(cell["verdict"], "fail");
  EXPECT_EQ(cell["met_expectation"], true);
  EXPECT_EQ(cell["apply"], "applied");
  EXPECT_EQ(cell["crashes"], 0) << "a wrong CRC crashes nothing";
  EXPECT_THAT(cell["reasons"].dump(), HasSubstr("the check failed"));
  EXPECT_THAT(cell["reasons"].dump(), HasSubstr("crc error"));
  EXPECT_THAT(cell["reasons"].dump(), HasSubstr("workload.check.command"));
  // Black-box figures: windows with work and CPU from nginx's processes.
  EXPECT_TRUE(cell["cpu_overhead_pct"].is_number()) << cell.dump(2);
  fs::path artefacts = cell["artefacts"].get<std::string>();
  EXPECT_TRUE(fs::exists(artefacts / "check-1.out")) << "a failed check's output is kept";

  auto db = metrics::CompatDb::OpenExisting(dir / "lab.db");
  ASSERT_OK(db);
  auto cells = db->CellsOfRun(json["run_id"].get<int64_t>());
  ASSERT_OK(cells);
  ASSERT_EQ(cells->size(), 1u);
  EXPECT_THAT(cells->front().application, StartsWith("nginx-light 1.22"));
  // The patch reached every nginx process: the master and both workers.
  auto figures = nlohmann::json::parse(
      RunSubprocess({.argv = {"cat", (artefacts / "figures.json").string()}})->stdout_data);
  EXPECT_GE(figures["pauses_us"].size(), 3u) << figures.dump(2);
  if (!::testing::Test::HasFailure()) fs::remove_all(dir);
}

}  // namespace
}  // namespace patchlab

// Real applications in a real Debian system, end to end: `patchlab images
// build debian12-apps` (mmdebstrap the first time: minutes), then one cell of
// `patchlab run` per test, each on Debian's nginx (master and workers) serving
// gzip pages under ab while libz's crc32_z is replaced:
//   - scenarios/nginx-gzip-bad: a crc32_z wrong in a bit in every nginx process;
//     nothing crashes, and the lab must still fail the patch, on the check's
//     wrong results, with the application recorded;
//   - nginx-gzip's correct patch with `patch.processes: all` (the scenario is
//     written here, beside the bundled one's files): one `hotpatch apply
//     --system` reaches every process mapping libz, the master, both workers
//     and python3 processes the check leaves behind, and the python3 started
//     while the patch was live are counted as running unpatched.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "base/file_util.h"
#include "base/subprocess.h"
#include "metrics/compat_db.h"
#include "tests/support/status_matchers.h"

namespace patchlab {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// Why a test cannot run here, or "" when it can.
std::string MissingForVmRun() {
  if (::access("/usr/bin/qemu-system-x86_64", X_OK) != 0)
    return "qemu-system-x86_64 is not installed (bash ci/setup)";
  if (::access("/usr/bin/mmdebstrap", X_OK) != 0)
    return "mmdebstrap is not installed (bash ci/setup)";
  if (::geteuid() != 0) return "mmdebstrap --mode=root and the lab cache need root";
  return "";
}

// A fresh scratch folder for one test.
fs::path Scratch(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / fmt::format("{}.{}", name, ::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// Builds debian12-apps (on its own: a fresh machine runs mmdebstrap here),
// then runs `scenario` on it with its own database, artefacts and keys under
// `dir`; returns `patchlab run --json`'s output and exit code.
struct RunOutput {
  nlohmann::json json;
  int exit_code = -1;
  std::string stderr_data;
};
RunOutput RunOnDebianApps(const std::string& scenario, const fs::path& dir) {
  SubprocessOptions build;
  build.argv = {PATCHLAB_BIN, "images", "build", "debian12-apps"};
  build.cwd = PATCHLAB_SOURCE_DIR;
  build.timeout = std::chrono::minutes(25);
  auto built = RunSubprocess(std::move(build));
  EXPECT_OK(built);
  if (!built) return {};
  EXPECT_TRUE(built->status.Success()) << built->stdout_data << built->stderr_data;

  SubprocessOptions run;
  run.argv = {PATCHLAB_BIN,    "run",
              scenario,        "--images",
              "debian12-apps", "--json",
              "--db",          (dir / "lab.db").string(),
              "--out",         (dir / "out").string(),
              "--key-dir",     (dir / "keys").string()};
  run.cwd = PATCHLAB_SOURCE_DIR;
  run.timeout = std::chrono::minutes(10);
  auto r = RunSubprocess(std::move(run));
  EXPECT_OK(r);
  if (!r) return {};
  return {nlohmann::json::parse(r->stdout_data, nullptr, false), r->status.code,
          r->stdout_data + r->stderr_data};
}

TEST(AppEndToEnd, NginxWithAWrongCrc32IsCaughtByItsCheck) {
  if (std::string why = MissingForVmRun(); !why.empty()) GTEST_SKIP() << why;
  fs::path dir = Scratch("apps_e2e");
  RunOutput r = RunOnDebianApps("scenarios/nginx-gzip-bad", dir);
  const nlohmann::json& json = r.json;
  ASSERT_TRUE(json.is_object()) << r.stderr_data;
  ASSERT_EQ(json["cells"].size(), 1u) << json.dump(2);
  const auto& cell = json["cells"][0];
  EXPECT_EQ(r.exit_code, 0) << json.dump(2) << r.stderr_data;
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

// The check of nginx-gzip, plus a python3 (which maps libz) left running
// for a while after each check: those started before an apply are patched
// with nginx's processes, those started while the patch is live are not.
constexpr const char* kSystemCheck = R"(#!/bin/sh
set -e
cell=$(dirname "$0")
python3 -c 'import time, zlib; time.sleep(8)' </dev/null >/dev/null 2>&1 &
/usr/lib/patchlab/busybox wget -q --header 'Accept-Encoding: gzip' -O "$cell/got.gz" \
  http://127.0.0.1:8080/big.txt
gzip -t "$cell/got.gz"
gzip -dc "$cell/got.gz" | cmp -s - "$cell/www/big.txt"
echo ok
)";

TEST(AppEndToEnd, ALibraryPatchReachesEveryProcessMappingItAndCountsThoseStartedAfter) {
  if (std::string why = MissingForVmRun(); !why.empty()) GTEST_SKIP() << why;
  fs::path dir = Scratch("apps_e2e_system");
  fs::path scenario = dir / "nginx-system";
  fs::create_directories(scenario);
  fs::path bundled = fs::path(PATCHLAB_SOURCE_DIR) / "scenarios/nginx-gzip";
  for (const char* f : {"nginx.conf", "start.sh", "crc32_fix.c"})
    fs::copy_file(bundled / f, scenario / f);
  ASSERT_OK(WriteFileAtomic(scenario / "check.sh", kSystemCheck));
  auto yaml = ReadFile(bundled / "scenario.yaml");
  ASSERT_OK(yaml);
  std::string text = *yaml;
  auto replace = [&](const std::string& from, const std::string& to) {
    size_t at = text.find(from);
    ASSERT_NE(at, std::string::npos) << from << " is not in " << text;
    text.replace(at, from.size(), to);
  };
  replace("name: nginx-gzip\n", "name: nginx-system\n");
  replace("  functions: [crc32_z]\n", "  functions: [crc32_z]\n  processes: all\n");
  // Two pairs keep the cell short: the CPU figure is then noisy and judges
  // nothing, so the cell passes unless the patch misses a process or a check
  // fails (the bundled scenario measures 12 and expects the CPU flagged).
  replace("  alternations: 12\n  max_alternations: 12\n",
          "  alternations: 2\n  max_alternations: 2\n");
  replace(
      "  verdict: fail\n  max_crashes: 0\n  overhead_flagged: true\n"
      "  reason_contains: above the 2.00% limit\n",
      "  verdict: pass\n  max_crashes: 0\n");
  ASSERT_OK(WriteFileAtomic(scenario / "scenario.yaml", text));

  RunOutput r = RunOnDebianApps(scenario.string(), dir);
  const nlohmann::json& json = r.json;
  ASSERT_TRUE(json.is_object()) << r.stderr_data;
  ASSERT_EQ(json["cells"].size(), 1u) << json.dump(2);
  const auto& cell = json["cells"][0];
  EXPECT_EQ(r.exit_code, 0) << json.dump(2) << r.stderr_data;
  // Passing needs the apply to reach nginx's every process (one it missed
  // makes the cell not-hotpatchable).
  EXPECT_EQ(cell["verdict"], "pass") << cell.dump(2);
  EXPECT_EQ(cell["apply"], "applied");
  EXPECT_EQ(cell["crashes"], 0);
  EXPECT_THAT(cell["reasons"].dump(),
              HasSubstr("started while the patch was live and ran unpatched"))
      << cell.dump(2);
  fs::path artefacts = cell["artefacts"].get<std::string>();
  auto figures = ReadFile(artefacts / "figures.json");
  ASSERT_OK(figures);
  auto f = nlohmann::json::parse(*figures);
  const auto& sw = f["system_wide"];
  ASSERT_TRUE(sw.is_object()) << f.dump(2);
  // nginx's master and two workers, and at least one python3 of the checks.
  EXPECT_GE(sw["most_patched"].get<int>(), 4) << sw.dump(2);
  EXPECT_GE(sw["started_unpatched"].get<int>(), 1) << sw.dump(2);
  for (const auto& p : sw["unpatched"]) EXPECT_EQ(p["comm"], "python3") << sw.dump(2);
  if (!::testing::Test::HasFailure()) fs::remove_all(dir);
}

}  // namespace
}  // namespace patchlab

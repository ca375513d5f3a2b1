// `patchlab run --backend libvirt`, the real program: its command line (label
// unit: how many cells run at once) and one real cell on a private libvirtd
// (label vm: the cell lands in the database with its host and meets its
// expectation). Built twice, like tests/harness/runner_end_to_end_test.cc.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "base/file_util.h"
#include "base/subprocess.h"
#include "metrics/compat_db.h"
#include "tests/libvirt/libvirtd_fixture.h"
#include "tests/support/status_matchers.h"

namespace patchlab {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

struct Outcome {
  int exit_code = -1;
  std::string stdout_data;
  std::string stderr_data;
};

Outcome RunPatchlab(std::vector<std::string> args, std::chrono::milliseconds timeout) {
  SubprocessOptions o;
  o.argv = {PATCHLAB_BIN, "run"};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.cwd = PATCHLAB_SOURCE_DIR;
  o.timeout = timeout;
  auto r = RunSubprocess(std::move(o));
  EXPECT_OK(r);
  Outcome out;
  if (!r) return out;
  out.exit_code = r->status.exited ? r->status.code : -1;
  out.stdout_data = r->stdout_data;
  out.stderr_data = r->stderr_data;
  return out;
}

#if !PATCHLAB_LIBVIRT_RUN_VM
// The parallelism is decided before any host is contacted; an unreadable
// --policy then stops the run at once (exit 2), so no host or VM is needed.
constexpr char kHostA[] = "qemu+unix:///system?socket=/nonexistent/patchlab-a";
constexpr char kHostB[] = "qemu+unix:///system?socket=/nonexistent/patchlab-b";

TEST(PatchlabRunLibvirt, WithoutJobsEveryHostsSlotsAreFilled) {
  Outcome out = RunPatchlab({"scenarios/kv-parse-fix", "--backend", "libvirt", "-c", kHostA, "-c",
                             kHostB, "--per-host", "3", "--policy", "/nonexistent/policy.yaml"},
                            std::chrono::seconds(60));
  EXPECT_EQ(out.exit_code, 2) << out.stderr_data;
  EXPECT_THAT(out.stderr_data,
              HasSubstr("libvirt: 2 host(s) x 3 VM(s) each; 6 cell(s) at a time\n"));
}

TEST(PatchlabRunLibvirt, AnExplicitJobsOneIsKept) {
  Outcome out =
      RunPatchlab({"scenarios/kv-parse-fix", "--backend", "libvirt", "-c", kHostA, "-c", kHostB,
                   "--per-host", "3", "-j", "1", "--policy", "/nonexistent/policy.yaml"},
                  std::chrono::seconds(60));
  EXPECT_EQ(out.exit_code, 2) << out.stderr_data;
  EXPECT_THAT(out.stderr_data,
              HasSubstr("libvirt: 2 host(s) x 3 VM(s) each; 1 cell(s) at a time (--jobs)\n"));
}

TEST(PatchlabRunLibvirt, AnExplicitJobsOtherThanOneIsKept) {
  Outcome out = RunPatchlab({"scenarios/kv-parse-fix", "--backend", "libvirt", "-c", kHostA,
                             "--jobs", "4", "--policy", "/nonexistent/policy.yaml"},
                            std::chrono::seconds(60));
  EXPECT_EQ(out.exit_code, 2) << out.stderr_data;
  EXPECT_THAT(out.stderr_data,
              HasSubstr("libvirt: 1 host(s) x 1 VM(s) each; 4 cell(s) at a time (--jobs)\n"));
}

#else
// One cell of the smallest bundled scenario on a private libvirtd, through the
// real `patchlab run`: the same runner, VM guest and figures as the QEMU
// backend's end-to-end test, with the VM a libvirt domain. The scenario's
// workload runs only as long as the runner measures (it stops the workload
// once its windows are taken), so the scenario runs unchanged.
TEST(PatchlabRunLibvirt, KvParseFixCellIsRecordedWithItsHost) {
  if (::geteuid() != 0)
    GTEST_SKIP() << "needs root (private libvirtd in a mount namespace, QEMU as root)";
  auto help = RunSubprocess({.argv = {HOTPATCH_BIN, "pack", "--help"}});
  if (!help || help->stdout_data.find("not built yet") != std::string::npos) {
    GTEST_SKIP() << "hotpatch pack is not built yet";
  }
  fs::path dir = fs::temp_directory_path() / fmt::format("patchlab-lv-run-{}", ::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto daemon = testing::PrivateLibvirtd::Start(dir / "daemon");
  ASSERT_OK(daemon);

  Outcome out = RunPatchlab(
      {"scenarios/kv-parse-fix", "--images", "debian12-cloud", "--cpus", "qemu64", "--backend",
       "libvirt", "--connect", (*daemon)->uri(), "--json", "--db", (dir / "lab.db").string(),
       "--out", (dir / "out").string(), "--key-dir", (dir / "keys").string()},
      std::chrono::minutes(9));
  nlohmann::json json = nlohmann::json::parse(out.stdout_data, nullptr, false);
  ASSERT_TRUE(json.is_object()) << out.stdout_data << out.stderr_data;
  ASSERT_EQ(out.exit_code, 0) << json.dump(2) << out.stderr_data;
  ASSERT_EQ(json["cells"].size(), 1u) << json.dump(2);
  EXPECT_EQ(json["cells"][0]["verdict"], "pass") << json.dump(2);
  EXPECT_EQ(json["cells"][0]["met_expectation"], true) << json.dump(2);

  auto db = metrics::CompatDb::OpenExisting(dir / "lab.db");
  ASSERT_OK(db);
  auto cells = db->CellsOfRun(json["run_id"].get<int64_t>());
  ASSERT_OK(cells);
  ASSERT_EQ(cells->size(), 1u);
  const metrics::CellResult& cell = (*cells)[0];
  EXPECT_EQ(cell.key.scenario, "kv-parse-fix");
  EXPECT_EQ(cell.key.image, "debian12-cloud");
  EXPECT_EQ(cell.host, (*daemon)->uri()) << "the cell's host is not the libvirt host it ran on";
  EXPECT_EQ(metrics::VerdictName(cell.verdict), "pass");
  EXPECT_EQ(cell.met_expectation, std::optional<bool>(true));
  // The libvirt side of the cell stays beside it.
  fs::path artefacts = cell.artefacts;
  EXPECT_TRUE(fs::exists(artefacts / "domain.xml")) << artefacts;
  EXPECT_TRUE(fs::exists(artefacts / "libvirt-stats.json")) << artefacts;
  EXPECT_TRUE(fs::exists(artefacts / "console.log")) << artefacts;
  auto run = db->GetRun(json["run_id"].get<int64_t>());
  ASSERT_TRUE(run);
  EXPECT_EQ(run->status, metrics::RunStatus::kComplete);
  if (!HasFailure()) {
    daemon->reset();
    fs::remove_all(dir);  // kept for a post-mortem otherwise
  } else {
    auto log = ReadFile((*daemon)->log_path());
    if (log) std::fprintf(stderr, "libvirtd log:\n%s\n", log->c_str());
  }
}
#endif

}  // namespace
}  // namespace patchlab

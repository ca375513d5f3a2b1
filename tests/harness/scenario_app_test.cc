// The scenario fields for real applications (targets the lab does not build):
// target.program/package/binary, a prebuilt patch.package + pubkey, and the
// workload's service, load and check. Every error names FILE:LINE:COL and the
// field, like the rest of the parser.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "base/file_util.h"
#include "harness/lab/scenario.h"
#include "tests/support/status_matchers.h"

namespace patchlab::harness {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// A valid real-application scenario; tests edit one line of it to break it.
constexpr const char* kApp = R"(name: web
images: [debian12-apps]
target:
  package: nginx-light
  program: /usr/sbin/nginx
patch:
  id: zfix
  module: /lib/x86_64-linux-gnu/libz.so.1
  sources: [fix.c]
  functions: [crc32_z]
workload:
  files: [check.sh]
  service:
    command: [nginx, -g, "daemon on;"]
    ready: [ab, -q, -n, "1", "http://127.0.0.1/"]
    ready_timeout: 20s
    stop: [nginx, -s, quit]
  load:
    command: [ab, -q, -t, "{window_s}", "http://127.0.0.1/"]
    work: 'Complete requests:\s+(\d+)'
    latency:
      p50: '50%\s+(\d+)'
  check:
    command: [sh, "{cell}/check.sh"]
    output: '^ok'
  duration: 30s
measure:
  window: 2s
  alternations: 2
expect:
  verdict: pass
timeout: 120s
)";

class AppScenarioTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("scenario_app_test." + std::to_string(getpid()) + "." +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    ASSERT_OK(WriteFileAtomic(dir_ / "fix.c", "int crc32_z(void) { return 1; }\n"));
    ASSERT_OK(WriteFileAtomic(dir_ / "check.sh", "echo ok\n"));
  }
  void TearDown() override { fs::remove_all(dir_); }

  Result<Scenario> Load(const std::string& text) {
    EXPECT_OK(WriteFileAtomic(dir_ / "scenario.yaml", text));
    return LoadScenario(dir_);
  }
  static std::string Edit(const std::string& from, const std::string& to) {
    std::string s = kApp;
    size_t at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return s.replace(at, from.size(), to);
  }
  std::string File() const { return (dir_ / "scenario.yaml").string(); }
  fs::path dir_;
};

TEST_F(AppScenarioTest, EveryFieldIsRead) {
  auto s = Load(kApp);
  ASSERT_OK(s);
  EXPECT_FALSE(s->target.Built());
  EXPECT_EQ(s->target.program, "/usr/sbin/nginx");
  EXPECT_EQ(s->target.package, "nginx-light");
  EXPECT_THAT(s->target.where, StartsWith(File() + ":5:"));
  const WorkloadSpec& w = s->workloads.at(0);
  ASSERT_TRUE(w.service && w.load && w.check);
  EXPECT_THAT(w.service->command.argv, ElementsAre("nginx", "-g", "daemon on;"));
  EXPECT_EQ(w.service->ready_timeout, std::chrono::seconds(20));
  EXPECT_THAT(w.service->ready.where, StartsWith(File() + ":15:"));
  EXPECT_THAT(w.service->ready.where, HasSubstr("workload.service.ready"));
  EXPECT_THAT(w.service->stop.argv, ElementsAre("nginx", "-s", "quit"));
  EXPECT_EQ(w.load->work, "Complete requests:\\s+(\\d+)");
  ASSERT_EQ(w.load->latency.size(), 1u);
  EXPECT_EQ(w.load->latency[0].first, "p50");
  EXPECT_THAT(w.load->work_where, HasSubstr("workload.load.work"));
  EXPECT_EQ(w.check->output, "^ok");
  EXPECT_THAT(w.files, ElementsAre("check.sh"));
}

TEST_F(AppScenarioTest, PatchProcessesAllIsRead) {
  auto s = Load(kApp);
  ASSERT_OK(s);
  EXPECT_EQ(s->patches.at(0).processes, PatchProcesses::kProgram) << "the default";
  s = Load(Edit("  functions: [crc32_z]", "  functions: [crc32_z]\n  processes: all"));
  ASSERT_OK(s);
  EXPECT_EQ(s->patches.at(0).processes, PatchProcesses::kAll);
}

TEST_F(AppScenarioTest, AnUnknownPatchProcessesValueIsRefusedAtItsLine) {
  auto s = Load(Edit("  functions: [crc32_z]", "  functions: [crc32_z]\n  processes: every"));
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), StartsWith(File() + ":11:"));
  EXPECT_THAT(s.error().ToString(), HasSubstr("patch.processes"));
  EXPECT_THAT(s.error().ToString(), HasSubstr("'program'"));
}

TEST_F(AppScenarioTest, PatchProcessesAllIsForRealApplicationsOnly) {
  std::string text = Edit("  package: nginx-light\n  program: /usr/sbin/nginx",
                          "  program: demo\n  sources: [fix.c]");
  text.replace(text.find("  functions: [crc32_z]"), 0, "  processes: all\n");
  auto s = Load(text);
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), StartsWith(File() + ":10:"));
  EXPECT_THAT(s.error().ToString(), HasSubstr("patch.processes"));
  EXPECT_THAT(s.error().ToString(), HasSubstr("real application"));
}

TEST_F(AppScenarioTest, ARelativeProgramWithoutSourcesIsRefusedAtItsLine) {
  auto s = Load(Edit("program: /usr/sbin/nginx", "program: nginx"));
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), StartsWith(File() + ":5:"));
  EXPECT_THAT(s.error().ToString(), HasSubstr("target.program"));
  EXPECT_THAT(s.error().ToString(), HasSubstr("absolute path"));
}

TEST_F(AppScenarioTest, ABadRegexIsRefusedAtItsLine) {
  auto s = Load(Edit(R"('Complete requests:\s+(\d+)')", R"('Complete (requests')"));
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), StartsWith(File() + ":20:"));
  EXPECT_THAT(s.error().ToString(), HasSubstr("workload.load.work"));
  EXPECT_THAT(s.error().ToString(), HasSubstr("not a valid regex"));
  s = Load(Edit("'^ok'", "'(ok'"));
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), HasSubstr("workload.check.output"));
}

TEST_F(AppScenarioTest, AServiceWithoutReadinessProbeIsRefused) {
  auto s = Load(Edit("    ready: [ab, -q, -n, \"1\", \"http://127.0.0.1/\"]\n", ""));
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), StartsWith(File() + ":14:"));
  EXPECT_THAT(s.error().ToString(), HasSubstr("workload.service"));
  EXPECT_THAT(s.error().ToString(), HasSubstr("'ready'"));
}

TEST_F(AppScenarioTest, AnUnknownKeyInTheServiceIsNamed) {
  auto s = Load(Edit("    ready_timeout: 20s", "    ready_timout: 20s"));
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), StartsWith(File() + ":16:"));
  EXPECT_THAT(s.error().ToString(), HasSubstr("ready_timout"));
}

TEST_F(AppScenarioTest, WorkWithoutLoadOrCheckIsRefused) {
  std::string text = kApp;
  text.erase(text.find("  load:\n"), text.find("  duration:") - text.find("  load:\n"));
  auto s = Load(text);
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), HasSubstr("load:"));
  EXPECT_THAT(s.error().ToString(), HasSubstr("check:"));
}

TEST_F(AppScenarioTest, ACommandIsForBuiltTargetsOnly) {
  auto s = Load(Edit("  files: [check.sh]", "  command: [nginx]"));
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), StartsWith(File() + ":12:"));
  EXPECT_THAT(s.error().ToString(), HasSubstr("workload.command"));
}

TEST_F(AppScenarioTest, AServiceIsForRealApplicationsOnly) {
  std::string text = Edit("  package: nginx-light\n  program: /usr/sbin/nginx",
                          "  program: demo\n  sources: [fix.c]");
  auto s = Load(text);
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), HasSubstr("workload.service"));
  EXPECT_THAT(s.error().ToString(), HasSubstr("labstats"));
}

TEST_F(AppScenarioTest, AMissingWorkloadFileIsNamed) {
  auto s = Load(Edit("files: [check.sh]", "files: [nowhere.sh]"));
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), HasSubstr("nowhere.sh does not exist"));
}

TEST_F(AppScenarioTest, APatchOfAnUnbuiltProgramNeedsAFileToPackAgainst) {
  auto s = Load(Edit("  module: /lib/x86_64-linux-gnu/libz.so.1\n", ""));
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), StartsWith(File() + ":7:"));
  EXPECT_THAT(s.error().ToString(), HasSubstr("target.binary"));
}

TEST_F(AppScenarioTest, APrebuiltPackageNeedsItsKeyAndNoSources) {
  ASSERT_OK(WriteFileAtomic(dir_ / "fix.hpk", "not really a package"));
  ASSERT_OK(WriteFileAtomic(dir_ / "release.pub", "key"));
  auto s = Load(Edit("  sources: [fix.c]\n  functions: [crc32_z]",
                     "  package: fix.hpk\n  pubkey: release.pub"));
  ASSERT_OK(s);
  EXPECT_TRUE(s->patches[0].Prebuilt());
  EXPECT_EQ(s->patches[0].pubkey, "release.pub");

  s = Load(Edit("  sources: [fix.c]\n  functions: [crc32_z]", "  package: fix.hpk"));
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), HasSubstr("'pubkey'"));

  s = Load(Edit("  functions: [crc32_z]", "  package: fix.hpk\n  pubkey: release.pub"));
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), HasSubstr("patch.sources"));
  EXPECT_THAT(s.error().ToString(), HasSubstr("prebuilt"));

  s = Load(Edit("  sources: [fix.c]\n  functions: [crc32_z]",
                "  package: gone.hpk\n  pubkey: release.pub"));
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), HasSubstr("gone.hpk does not exist"));
}

TEST_F(AppScenarioTest, ABinaryGivesTheProgramItsDefaultPath) {
  ASSERT_OK(WriteFileAtomic(dir_ / "server", "ELF"));
  auto s = Load(Edit("  package: nginx-light\n  program: /usr/sbin/nginx", "  binary: server"));
  ASSERT_OK(s);
  EXPECT_EQ(s->target.program, "/usr/local/bin/server");
  EXPECT_EQ(s->target.binary, "server");
  s = Load(Edit("  package: nginx-light\n  program: /usr/sbin/nginx", "  binary: nothere"));
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), HasSubstr("target.binary"));
}

}  // namespace
}  // namespace patchlab::harness

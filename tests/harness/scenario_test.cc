#include "harness/lab/scenario.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "base/file_util.h"
#include "tests/support/status_matchers.h"

namespace patchlab::harness {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// A valid scenario; tests edit one line of it to break it.
constexpr const char* kValid = R"(name: demo
target:
  program: demo
  sources: [demo.c]
patch:
  id: demo-1
  seq: 2
  sources: [fix.c]
  functions: [f, g=g_v2]
  references: [counter]
workload:
  command: [demo, --threads, "{threads}"]
  threads: 3
  duration: 10s
  warmup: 500ms
measure:
  window: 1s
  alternations: 2
expect:
  verdict: pass
timeout: 60s
)";

class ScenarioFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("scenario_test." + std::to_string(getpid()) + "." +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    ASSERT_TRUE(WriteFileAtomic(dir_ / "demo.c", "int main(void) { return 0; }\n"));
    ASSERT_TRUE(WriteFileAtomic(dir_ / "fix.c", "int f(void) { return 1; }\n"));
  }
  void TearDown() override { fs::remove_all(dir_); }

  Result<Scenario> Load(const std::string& text) {
    EXPECT_TRUE(WriteFileAtomic(dir_ / "scenario.yaml", text));
    return LoadScenario(dir_);
  }
  // kValid with the first occurrence of `from` replaced by `to`.
  static std::string Edit(const std::string& from, const std::string& to) {
    std::string s = kValid;
    size_t at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return s.replace(at, from.size(), to);
  }
  std::string File() const { return (dir_ / "scenario.yaml").string(); }

  fs::path dir_;
};

TEST_F(ScenarioFileTest, ValidScenarioLoadsEveryField) {
  auto s = Load(kValid);
  ASSERT_OK(s);
  EXPECT_EQ(s->name, "demo");
  EXPECT_EQ(s->target.program, "demo");
  ASSERT_EQ(s->patches.size(), 1u);
  EXPECT_EQ(s->patches[0].seq, 2u);
  ASSERT_EQ(s->patches[0].functions.size(), 2u);
  EXPECT_EQ(s->patches[0].functions[0].old_name, "f");
  EXPECT_EQ(s->patches[0].functions[0].new_name, "f");
  EXPECT_EQ(s->patches[0].functions[1].old_name, "g");
  EXPECT_EQ(s->patches[0].functions[1].new_name, "g_v2");
  ASSERT_EQ(s->workloads.size(), 1u);
  EXPECT_EQ(s->workloads[0].name, "default");
  EXPECT_EQ(s->workloads[0].threads, 3);
  EXPECT_EQ(s->workloads[0].warmup.count(), 500);
  EXPECT_EQ(s->measure.alternations, 2);
  EXPECT_EQ(s->timeout.count(), 60000);
  EXPECT_EQ(s->expect.verdict, Verdict::kPass);
  EXPECT_EQ(s->dir, dir_);
}

// ParseScenario reads text as if from the file it names: the same scenario,
// errors naming that file, sources looked for beside it.
TEST_F(ScenarioFileTest, TextReadsAsIfFromTheFile) {
  auto s = ParseScenario(kValid, dir_ / "scenario.yaml");
  ASSERT_OK(s);
  EXPECT_EQ(s->name, "demo");
  EXPECT_EQ(s->dir, dir_);
  EXPECT_EQ(s->file, dir_ / "scenario.yaml");
  auto bad = ParseScenario(Edit("threads: 3", "threads: many"), dir_ / "scenario.yaml");
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().ToString(), StartsWith(File() + ":13:12:"));
  auto elsewhere = ParseScenario(kValid, dir_ / "sub" / "scenario.yaml");
  ASSERT_FALSE(elsewhere);
  EXPECT_THAT(elsewhere.error().ToString(), HasSubstr("does not exist"));
}

TEST_F(ScenarioFileTest, UnknownKeyNamesFileLineAndColumn) {
  auto s = Load(Edit("  threads: 3\n", "  threads: 3\n  thread: 4\n"));
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), StartsWith(File() + ":14:3:"));
  EXPECT_THAT(s.error().ToString(), HasSubstr("unknown key 'workload.thread'"));
}

TEST_F(ScenarioFileTest, WrongTypeNamesFileLineAndColumn) {
  auto s = Load(Edit("threads: 3", "threads: many"));
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), StartsWith(File() + ":13:12:"));
  EXPECT_THAT(s.error().ToString(), HasSubstr("workload.threads"));
  EXPECT_THAT(s.error().ToString(), HasSubstr("'many'"));
}

TEST_F(ScenarioFileTest, MissingFieldIsNamed) {
  auto s = Load(Edit("  functions: [f, g=g_v2]\n", ""));
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), StartsWith(File() + ":6:3:"));
  EXPECT_THAT(s.error().ToString(), HasSubstr("missing required field 'functions'"));
}

TEST_F(ScenarioFileTest, MissingTimeoutIsAnError) {
  auto s = Load(Edit("timeout: 60s\n", ""));
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), StartsWith(File() + ":1:1:"));
  EXPECT_THAT(s.error().ToString(), HasSubstr("'timeout'"));
}

TEST_F(ScenarioFileTest, BadDurationNamesTheField) {
  auto s = Load(Edit("window: 1s", "window: 1 fortnight"));
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), StartsWith(File() + ":17:11:"));
  EXPECT_THAT(s.error().ToString(), HasSubstr("measure.window"));
}

TEST_F(ScenarioFileTest, PairBudgetBelowTheFirstLookNamesTheField) {
  auto s = Load(Edit("alternations: 2", "alternations: 2\n  max_alternations: 1"));
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), HasSubstr("measure.max_alternations"));
  EXPECT_THAT(s.error().ToString(), HasSubstr("at least alternations (2)"));
}

TEST_F(ScenarioFileTest, CpuLimitIsKeptOnlyWhenTheScenarioSetsIt) {
  auto s = Load(Edit("alternations: 2", "alternations: 2\nlimits:\n  pause_us: 1000"));
  ASSERT_OK(s);
  EXPECT_FALSE(s->limits.cpu_overhead_pct.has_value());  // the policy's limit applies
  EXPECT_EQ(s->measure.max_alternations, 28);
}

TEST_F(ScenarioFileTest, BadFunctionMapNamesTheItem) {
  auto s = Load(Edit("[f, g=g_v2]", "[f, \"g=\"]"));
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), StartsWith(File() + ":9:18:"));
  EXPECT_THAT(s.error().ToString(), HasSubstr("OLD or OLD=NEW"));
}

TEST_F(ScenarioFileTest, WorkloadShorterThanItsWindowsIsRefused) {
  auto s = Load(Edit("duration: 10s", "duration: 3s"));
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), HasSubstr("shorter than warmup"));
}

TEST_F(ScenarioFileTest, TimeoutShorterThanWorkloadIsRefused) {
  auto s = Load(Edit("timeout: 60s", "timeout: 5s"));
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), StartsWith(File() + ":21:10:"));
}

TEST_F(ScenarioFileTest, MissingSourceFileIsNamed) {
  fs::remove(dir_ / "fix.c");
  auto s = Load(kValid);
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), HasSubstr("fix.c does not exist"));
  EXPECT_THAT(s.error().ToString(), StartsWith(File() + ":6:3:"));
}

TEST_F(ScenarioFileTest, SourceOutsideTheFolderIsRefused) {
  auto s = Load(Edit("[fix.c]", "[../../etc/passwd]"));
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), HasSubstr("inside the scenario folder"));
}

TEST_F(ScenarioFileTest, ExpectInfraErrorIsRefused) {
  auto s = Load(Edit("verdict: pass", "verdict: infra-error"));
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), StartsWith(File() + ":20:12:"));
}

TEST_F(ScenarioFileTest, DuplicatePatchIdsAreRefused) {
  std::string text = Edit("patch:\n  id: demo-1", "patch:\n- id: demo-1");
  text = Edit(
      "patch:\n  id: demo-1\n  seq: 2\n  sources: [fix.c]\n  functions: [f, g=g_v2]\n  references: "
      "[counter]\n",
      "patch:\n  - {id: demo-1, sources: [fix.c], functions: [f]}\n  - {id: demo-1, sources: "
      "[fix.c], functions: [f]}\n");
  auto s = Load(text);
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), HasSubstr("id 'demo-1' appears twice"));
}

TEST_F(ScenarioFileTest, SemanticSectionIsParsedByTheChecker) {
  auto ok =
      Load(Edit("expect:", "semantic:\n  old: demo:f\n  new: demo-1.so:f\n  inputs: 50\nexpect:"));
  ASSERT_OK(ok);
  ASSERT_TRUE(ok->semantic);
  EXPECT_EQ(ok->semantic->inputs, 50u);
  EXPECT_EQ(ok->semantic->old_fn.symbol, "f");

  auto bad =
      Load(Edit("expect:", "semantic:\n  old: demo:f\n  new: demo-1.so:f\n  inputz: 50\nexpect:"));
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().ToString(), StartsWith(File() + ":22:3:"));
  EXPECT_THAT(bad.error().ToString(), HasSubstr("inputz"));
}

TEST_F(ScenarioFileTest, YamlSyntaxErrorNamesTheLine) {
  auto s = Load(Edit("  threads: 3\n", "  threads: [3\n"));
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), StartsWith(File() + ":"));
}

TEST(ScenarioDuration, ParsesUnitsAndRefusesGarbage) {
  EXPECT_EQ(ParseDuration("500ms")->count(), 500);
  EXPECT_EQ(ParseDuration("1.5s")->count(), 1500);
  EXPECT_EQ(ParseDuration("2m")->count(), 120000);
  EXPECT_EQ(ParseDuration("3")->count(), 3000);
  EXPECT_FALSE(ParseDuration(""));
  EXPECT_FALSE(ParseDuration("-1s"));
  EXPECT_FALSE(ParseDuration("1h"));
  EXPECT_FALSE(ParseDuration("s"));
}

TEST(BundledScenarios, AllParse) {
  auto all = LoadScenarios({PATCHLAB_SCENARIOS_DIR});
  ASSERT_OK(all);
  std::vector<std::string> names;
  for (const auto& s : *all) names.push_back(s.name);
  EXPECT_THAT(names, ::testing::UnorderedElementsAre("bad-crash", "kv-parse-fix", "nginx-gzip",
                                                     "nginx-gzip-bad", "not-hotpatchable",
                                                     "redis-lzf", "slow-patch", "zlib-checksum"));
  for (const auto& s : *all) {
    EXPECT_GT(s.timeout.count(), 0) << s.name;
    EXPECT_FALSE(s.patches.empty()) << s.name;
  }
}

TEST(BundledScenarios, NothingNamedIsAnError) {
  auto none = LoadScenarios({"/nonexistent/scenarios"});
  ASSERT_FALSE(none);
  EXPECT_THAT(none.error().ToString(), HasSubstr("/nonexistent/scenarios"));
  EXPECT_FALSE(LoadScenarios({}));
}

}  // namespace
}  // namespace patchlab::harness

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

// A patch list whose second entry carries its own expect: and semantic:.
constexpr const char* kTwoPatches =
    "patch:\n"
    "  - {id: demo-1, sources: [fix.c], functions: [f]}\n"
    "  - id: demo-2\n"
    "    sources: [fix.c]\n"
    "    functions: [f]\n"
    "    expect: {verdict: fail, overhead_flagged: true}\n"
    "    semantic: {old: demo:f, new: demo-2.so:f, inputs: 7}\n";

std::string WithTwoPatches(std::string text) {
  size_t from = text.find("patch:\n");
  size_t to = text.find("workload:\n");
  return text.replace(from, to - from, kTwoPatches);
}

TEST_F(ScenarioFileTest, PatchEntryCarriesItsOwnExpectationAndSemanticCheck) {
  auto s = Load(WithTwoPatches(kValid));
  ASSERT_OK(s);
  ASSERT_EQ(s->patches.size(), 2u);
  // The first patch has neither: the scenario's expectation, no check.
  EXPECT_FALSE(s->patches[0].expect);
  EXPECT_EQ(ExpectOf(*s, s->patches[0]).verdict, Verdict::kPass);
  EXPECT_EQ(SemanticOf(*s, s->patches[0]), nullptr);
  // The second one's own replace the scenario's.
  const ExpectSpec& second = ExpectOf(*s, s->patches[1]);
  EXPECT_EQ(second.verdict, Verdict::kFail);
  EXPECT_EQ(second.overhead_flagged, true);
  const emulator::CheckOptions* check = SemanticOf(*s, s->patches[1]);
  ASSERT_NE(check, nullptr);
  EXPECT_EQ(check->inputs, 7u);
  EXPECT_EQ(fs::path(check->new_fn.elf).filename(), "demo-2.so");
}

TEST_F(ScenarioFileTest, ScenarioSemanticCheckIsThePatchesWithoutTheirOwn) {
  std::string text = WithTwoPatches(kValid);
  text.replace(text.find("expect:\n  verdict"), 7,
               "semantic: {old: demo:f, new: demo-1.so:f, inputs: 9}\nexpect:");
  auto s = Load(text);
  ASSERT_OK(s);
  ASSERT_NE(SemanticOf(*s, s->patches[0]), nullptr);
  EXPECT_EQ(SemanticOf(*s, s->patches[0])->inputs, 9u);
  EXPECT_EQ(SemanticOf(*s, s->patches[1])->inputs, 7u);
}

TEST_F(ScenarioFileTest, BadPatchExpectationNamesFileLineAndField) {
  std::string text = WithTwoPatches(kValid);
  text.replace(text.find("verdict: fail"), 13, "verdict: infra-error");
  auto s = Load(text);
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), StartsWith(File() + ":10:"));
  EXPECT_THAT(s.error().ToString(), HasSubstr("verdict"));
  EXPECT_THAT(s.error().ToString(), HasSubstr("infra-error"));

  text = WithTwoPatches(kValid);
  text.replace(text.find("inputs: 7"), 9, "inputz: 7");
  s = Load(text);
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().ToString(), StartsWith(File() + ":11:"));
  EXPECT_THAT(s.error().ToString(), HasSubstr("inputz"));
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

// The built-in gate policy needs a semantic pass: a bundled patch expected to
// pass without a semantic check of its own would gate 3 ("no semantic check
// recorded") however well its cells went.
TEST(BundledScenarios, EveryPatchExpectedToPassHasASemanticCheck) {
  auto all = LoadScenarios({PATCHLAB_SCENARIOS_DIR});
  ASSERT_OK(all);
  for (const auto& s : *all) {
    for (const auto& p : s.patches) {
      if (ExpectOf(s, p).verdict != Verdict::kPass) continue;
      const emulator::CheckOptions* check = SemanticOf(s, p);
      ASSERT_NE(check, nullptr) << s.name << "/" << p.id;
      if (!p.semantic) {  // the scenario's section runs for the patch whose object it names
        EXPECT_EQ(fs::path(check->new_fn.elf).filename(), p.id + ".so") << s.name << "/" << p.id;
      }
    }
  }
}

TEST(BundledScenarios, TheLibzAdlerFixIsExpectedFlaggedAndTheServicePatchToPass) {
  auto s = LoadScenario(fs::path(PATCHLAB_SCENARIOS_DIR) / "zlib-checksum");
  ASSERT_OK(s);
  ASSERT_EQ(s->patches.size(), 2u);
  EXPECT_EQ(ExpectOf(*s, s->patches[0]).verdict, Verdict::kPass);
  EXPECT_EQ(ExpectOf(*s, s->patches[1]).verdict, Verdict::kFail);
  EXPECT_EQ(ExpectOf(*s, s->patches[1]).overhead_flagged, true);
}

TEST(BundledScenarios, NothingNamedIsAnError) {
  auto none = LoadScenarios({"/nonexistent/scenarios"});
  ASSERT_FALSE(none);
  EXPECT_THAT(none.error().ToString(), HasSubstr("/nonexistent/scenarios"));
  EXPECT_FALSE(LoadScenarios({}));
}

}  // namespace
}  // namespace patchlab::harness

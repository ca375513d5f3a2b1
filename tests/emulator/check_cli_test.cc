// `patchlab check` through the real program: exit codes 0/1/2/3, JSON keys,
// the scenario form, and the same output for the same seed.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "base/file_util.h"
#include "base/subprocess.h"
#include "tests/support/status_matchers.h"

using ::testing::HasSubstr;

namespace patchlab {
namespace {

SubprocessResult Check(std::vector<std::string> args) {
  SubprocessOptions o;
  o.argv = {PATCHLAB_BIN, "check"};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.timeout = std::chrono::seconds(60);
  auto r = RunSubprocess(o);
  EXPECT_OK(r);
  return r.value_or(SubprocessResult{});
}

std::string Fn(const char* elf, const char* sym) { return std::string(elf) + ":" + sym; }

TEST(CheckCli, EquivalentExitsZeroWithJsonKeys) {
  auto r = Check({"--old", Fn(FIXTURE_TARGET, "sum_loop"), "--new",
                  Fn(FIXTURE_TARGET, "sum_unrolled"), "--sig",
                  "uint32_t f(const unsigned char *buf, size_t len)", "--inputs", "300", "--json"});
  EXPECT_EQ(r.status.code, 0) << r.stdout_data << r.stderr_data;
  auto j = nlohmann::json::parse(r.stdout_data, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.stdout_data;
  EXPECT_EQ(j["verdict"], "equivalent");
  EXPECT_EQ(j["inputs_run"], 300);
  EXPECT_TRUE(j["counterexamples"].is_array());
  EXPECT_GT(j["insns_old"].get<uint64_t>(), 0u);
  EXPECT_GT(j["insns_new"].get<uint64_t>(), 0u);
  EXPECT_EQ(j["insns_inputs"], 10) << "every 32nd of 300 inputs";
  auto all =
      Check({"--old", Fn(FIXTURE_TARGET, "sum_loop"), "--new", Fn(FIXTURE_TARGET, "sum_unrolled"),
             "--sig", "uint32_t f(const unsigned char *buf, size_t len)", "--inputs", "300",
             "--count-every", "1", "--json"});
  auto ja = nlohmann::json::parse(all.stdout_data, nullptr, false);
  ASSERT_FALSE(ja.is_discarded()) << all.stdout_data;
  EXPECT_EQ(ja["insns_inputs"], 300);
  EXPECT_GT(ja["insns_old"].get<uint64_t>(), j["insns_old"].get<uint64_t>());
}

TEST(CheckCli, NewCrashExitsOneWithAMinimizedCounterexample) {
  std::vector<std::string> args = {"--old",    Fn(FIXTURE_TARGET, "first_char"),
                                   "--new",    Fn(FIXTURE_TARGET, "first_char_no_null_check"),
                                   "--sig",    "int first_char(const char *s)",
                                   "--inputs", "200",
                                   "--json",   "--seed",
                                   "5"};
  auto r = Check(args);
  EXPECT_EQ(r.status.code, 1) << r.stdout_data << r.stderr_data;
  auto j = nlohmann::json::parse(r.stdout_data, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.stdout_data;
  EXPECT_EQ(j["verdict"], "new-crash");
  ASSERT_GE(j["counterexamples"].size(), 1u);
  const auto& c = j["counterexamples"][0];
  for (const char* key : {"kind", "input", "old", "new", "detail"})
    EXPECT_TRUE(c.contains(key)) << key;
  EXPECT_EQ(c["kind"], "new-crash");
  EXPECT_THAT(c["input"].get<std::string>(), HasSubstr("s=NULL")) << c["input"];
  EXPECT_EQ(Check(args).stdout_data, r.stdout_data) << "same seed, same output";
}

TEST(CheckCli, ExpectTurnsTheFixIntoExitZero) {
  auto r = Check({"--old", Fn(FIXTURE_TARGET, "safe_div"), "--new",
                  Fn(FIXTURE_TARGET, "safe_div_fixed"), "--sig", "int safe_div(int a, int b)",
                  "--inputs", "300", "--expect", "new.ret == 0 when b == 0"});
  EXPECT_EQ(r.status.code, 0) << r.stdout_data << r.stderr_data;
  EXPECT_THAT(r.stdout_data, HasSubstr("verdict: expected-divergence")) << r.stdout_data;
}

TEST(CheckCli, InconclusiveExitsThreeNamingTheReason) {
  auto r =
      Check({"--old", Fn(FIXTURE_TARGET, "uses_getenv"), "--new", Fn(FIXTURE_TARGET, "uses_getenv"),
             "--sig", "int f(const char *name)", "--inputs", "50"});
  EXPECT_EQ(r.status.code, 3) << r.stdout_data << r.stderr_data;
  EXPECT_THAT(r.stdout_data, HasSubstr("getenv")) << r.stdout_data;
}

TEST(CheckCli, UsageAndSetupErrorsExitTwo) {
  EXPECT_EQ(Check({}).status.code, 2);
  EXPECT_EQ(Check({"--old", Fn(FIXTURE_TARGET, "sum_loop")}).status.code, 2) << "no --new";
  auto bad_sig = Check({"--old", Fn(FIXTURE_TARGET, "sum_loop"), "--new",
                        Fn(FIXTURE_TARGET, "sum_loop"), "--sig", "int f(struct s *p)"});
  EXPECT_EQ(bad_sig.status.code, 2);
  EXPECT_THAT(bad_sig.stderr_data, HasSubstr("'p'")) << bad_sig.stderr_data;
  auto bad_expect =
      Check({"--old", Fn(FIXTURE_TARGET, "classify"), "--new", Fn(FIXTURE_TARGET, "classify"),
             "--sig", "int f(int c)", "--expect", "c >"});
  EXPECT_EQ(bad_expect.status.code, 2);
  EXPECT_THAT(bad_expect.stderr_data, HasSubstr("column")) << bad_expect.stderr_data;
}

TEST(CheckCli, ScenarioSemanticSection) {
  std::string dir = ::testing::TempDir() + "/check_cli_scenario";
  ASSERT_TRUE(MakeDirs(dir).has_value());
  std::string yaml = std::string("name: ignored by check\nsemantic:\n") +
                     "  old: " + Fn(FIXTURE_TARGET, "accumulate") +
                     "\n  new: " + Fn(FIXTURE_PATCH, "accumulate_forgets") +
                     "\n  signature: \"int f(int x)\"\n  inputs: 100\n";
  ASSERT_TRUE(WriteFileAtomic(dir + "/scenario.yaml", yaml).has_value());
  auto r = Check({dir + "/scenario.yaml", "--json"});
  EXPECT_EQ(r.status.code, 1) << r.stdout_data << r.stderr_data;
  EXPECT_THAT(r.stdout_data, HasSubstr("\"memory\"")) << r.stdout_data;
  ASSERT_TRUE(WriteFileAtomic(dir + "/bad.yaml", "semantic:\n  old: x:y\n  new: x:y\n  bogus: 1\n")
                  .has_value());
  auto bad = Check({dir + "/bad.yaml"});
  EXPECT_EQ(bad.status.code, 2);
  EXPECT_THAT(bad.stderr_data, HasSubstr("bad.yaml:4")) << bad.stderr_data;
}

}  // namespace
}  // namespace patchlab

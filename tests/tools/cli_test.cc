// The two programs' command lines: every subcommand is listed in --help, the
// version carries git describe, and a usage error exits 2 (scripts rely on it).
#include <gtest/gtest.h>

#include "base/subprocess.h"
#include "base/version.h"
#include "tests/support/status_matchers.h"

using ::testing::HasSubstr;

namespace patchlab {
namespace {

SubprocessResult RunTool(std::vector<std::string> argv) {
  SubprocessOptions o;
  o.argv = std::move(argv);
  o.timeout = std::chrono::seconds(30);
  auto r = RunSubprocess(o);
  EXPECT_OK(r);
  return r.value_or(SubprocessResult{});
}

TEST(Cli, HotpatchHelpListsEverySubcommand) {
  auto r = RunTool({HOTPATCH_BIN, "--help"});
  EXPECT_TRUE(r.status.Success()) << r.status.ToString();
  for (const char* sub : {"keygen", "pack", "apply", "revert", "status", "verify", "recover"}) {
    EXPECT_THAT(r.stdout_data, HasSubstr(sub)) << "missing " << sub << " in\n" << r.stdout_data;
  }
}

TEST(Cli, PatchlabHelpListsEverySubcommand) {
  auto r = RunTool({PATCHLAB_BIN, "--help"});
  EXPECT_TRUE(r.status.Success()) << r.status.ToString();
  for (const char* sub :
       {"check", "images", "run", "compat", "runs", "history", "gate", "report", "hosts"}) {
    EXPECT_THAT(r.stdout_data, HasSubstr(sub)) << "missing " << sub << " in\n" << r.stdout_data;
  }
}

TEST(Cli, VersionCarriesGitDescribe) {
  for (const char* bin : {HOTPATCH_BIN, PATCHLAB_BIN}) {
    auto r = RunTool({bin, "--version"});
    EXPECT_TRUE(r.status.Success());
    EXPECT_THAT(r.stdout_data, HasSubstr(GitDescribe())) << r.stdout_data;
    EXPECT_THAT(r.stdout_data, HasSubstr(Version())) << r.stdout_data;
  }
}

TEST(Cli, UsageErrorsExitTwo) {
  for (const char* bin : {HOTPATCH_BIN, PATCHLAB_BIN}) {
    EXPECT_EQ(RunTool({bin}).status.code, 2) << bin << " with no subcommand";
    EXPECT_EQ(RunTool({bin, "no-such-command"}).status.code, 2) << bin;
    EXPECT_EQ(RunTool({bin, "--no-such-flag"}).status.code, 2) << bin;
  }
}

TEST(Cli, BadLogSpecIsAUsageError) {
  auto r = RunTool({PATCHLAB_BIN, "--log", "loud", "runs"});
  EXPECT_EQ(r.status.code, 2);
  EXPECT_THAT(r.stderr_data, HasSubstr("loud")) << r.stderr_data;
}

}  // namespace
}  // namespace patchlab

#include "base/log.h"

#include <gtest/gtest.h>

#include "tests/support/status_matchers.h"

using ::testing::HasSubstr;

namespace patchlab {
namespace {

TEST(Log, PerComponentLevels) {
  ASSERT_TRUE(SetLogSpec("warn,patchcore=debug").has_value());
  EXPECT_EQ(Log("patchcore")->level(), spdlog::level::debug);
  EXPECT_EQ(Log("harness")->level(), spdlog::level::warn);
  ASSERT_TRUE(SetLogSpec("error").has_value());
  EXPECT_EQ(Log("harness")->level(), spdlog::level::err);
  EXPECT_EQ(Log("patchcore")->level(), spdlog::level::debug);
}

TEST(Log, UnknownLevelIsRejectedAndChangesNothing) {
  ASSERT_TRUE(SetLogSpec("info").has_value());
  auto s = SetLogSpec("debug,emulator=loud");
  ASSERT_FALSE(s.has_value());
  EXPECT_THAT(s.error().message(), HasSubstr("loud"));
  EXPECT_EQ(Log("emulator")->level(), spdlog::level::info);
}

}  // namespace
}  // namespace patchlab

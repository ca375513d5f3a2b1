#include "base/error.h"

#include <gtest/gtest.h>

namespace patchlab {
namespace {

TEST(Error, FromErrnoCarriesErrnoAndStrerror) {
  Error e = Error::FromErrno("open /nonexistent", ENOENT);
  EXPECT_EQ(e.code(), ErrorCode::kNotFound);
  EXPECT_EQ(e.sys_errno(), ENOENT);
  EXPECT_EQ(e.ToString(), "open /nonexistent: No such file or directory");
}

TEST(Error, FromErrnoClassifiesVanishedProcessAndTimeout) {
  EXPECT_EQ(Error::FromErrno("ptrace", ESRCH).code(), ErrorCode::kTargetGone);
  EXPECT_EQ(Error::FromErrno("wait", ETIMEDOUT).code(), ErrorCode::kTimeout);
  EXPECT_EQ(Error::FromErrno("write", ENOSPC).code(), ErrorCode::kIo);
}

TEST(Error, ContextIsPrintedOutermostFirst) {
  Error e(ErrorCode::kParse, "bad byte");
  e.AddContext("section .text").AddContext("reading a.out");
  EXPECT_EQ(e.ToString(), "reading a.out: section .text: bad byte");
  ASSERT_EQ(e.context().size(), 2u);
}

TEST(Error, FailBuildsUnexpectedWithFormattedMessage) {
  Result<int> r = Fail(ErrorCode::kRefused, "function {} is {} bytes", "f", 3);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kRefused);
  EXPECT_EQ(r.error().message(), "function f is 3 bytes");
}

TEST(Error, WithContextOnlyTouchesFailures) {
  Result<int> ok = 5;
  EXPECT_EQ(*WithContext(ok, "ignored"), 5);
  Result<int> bad = Fail(ErrorCode::kIo, "x");
  EXPECT_EQ(WithContext(bad, "pid 7").error().ToString(), "pid 7: x");
}

TEST(Error, FormatsThroughFmt) {
  Error e(ErrorCode::kTimeout, "late");
  e.AddContext("apply");
  EXPECT_EQ(fmt::format("[{}]", e), "[apply: late]");
  EXPECT_EQ(ErrorCodeName(ErrorCode::kRolledBack), "rolled-back");
}

}  // namespace
}  // namespace patchlab

#include "base/scoped_fd.h"

#include <fcntl.h>
#include <gtest/gtest.h>

namespace patchlab {
namespace {

bool IsOpen(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

TEST(ScopedFd, ClosesOnDestruction) {
  int raw = ::open("/dev/null", O_RDONLY);
  ASSERT_GE(raw, 0);
  {
    ScopedFd fd(raw);
    EXPECT_TRUE(IsOpen(raw));
  }
  EXPECT_FALSE(IsOpen(raw));
}

TEST(ScopedFd, MoveTransfersOwnership) {
  int raw = ::open("/dev/null", O_RDONLY);
  ScopedFd a(raw);
  ScopedFd b(std::move(a));
  EXPECT_FALSE(a.valid());
  EXPECT_EQ(b.get(), raw);
  ScopedFd c;
  c = std::move(b);
  EXPECT_EQ(c.get(), raw);
  EXPECT_TRUE(IsOpen(raw));
}

TEST(ScopedFd, MoveAssignClosesThePreviousFd) {
  int first = ::open("/dev/null", O_RDONLY);
  int second = ::open("/dev/null", O_RDONLY);
  ScopedFd a(first);
  a = ScopedFd(second);
  EXPECT_FALSE(IsOpen(first));
  EXPECT_TRUE(IsOpen(second));
}

TEST(ScopedFd, ReleaseGivesUpOwnership) {
  int raw = ::open("/dev/null", O_RDONLY);
  {
    ScopedFd fd(raw);
    EXPECT_EQ(fd.Release(), raw);
    EXPECT_FALSE(fd);
  }
  EXPECT_TRUE(IsOpen(raw));
  ::close(raw);
}

}  // namespace
}  // namespace patchlab

// ExitStatus, the one exit type of host subprocesses and guest processes.
#include "base/exit_status.h"

#include <gtest/gtest.h>
#include <signal.h>

namespace patchlab {
namespace {

TEST(ExitStatus, SaysHowAProcessEnded) {
  EXPECT_EQ((ExitStatus{.exited = true, .code = 3}).ToString(), "exit 3");
  EXPECT_TRUE((ExitStatus{.exited = true, .code = 0}).Success());
  EXPECT_FALSE((ExitStatus{.exited = true, .code = 3}).Success());
  ExitStatus segv{.signal = SIGSEGV, .core_dumped = true};
  EXPECT_EQ(segv.ToString(), "killed by SIGSEGV (core dumped)");
  EXPECT_FALSE(segv.StillRunning());
  ExitStatus killed{.signal = SIGKILL, .timed_out = true};
  EXPECT_EQ(killed.ToString(), "timed out, killed by SIGKILL");
  EXPECT_FALSE(killed.Success());
}

// The agent's `wait` that timed out: the guest process runs on.
TEST(ExitStatus, AWaitThatTimedOutIsStillRunning) {
  ExitStatus waiting{.timed_out = true};
  EXPECT_TRUE(waiting.StillRunning());
  EXPECT_FALSE(waiting.Success());
  EXPECT_EQ(waiting.ToString(), "still running");
}

TEST(ExitStatus, NamesSignals) {
  EXPECT_EQ(SignalName(SIGABRT), "SIGABRT");
  EXPECT_EQ(SignalName(99), "signal 99");
}

}  // namespace
}  // namespace patchlab

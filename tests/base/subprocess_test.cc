#include "base/subprocess.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <thread>

#include "base/file_util.h"
#include "base/parent_death.h"
#include "base/proc_stat.h"
#include "base/scoped_fd.h"
#include "tests/support/status_matchers.h"

using ::testing::HasSubstr;
using ::testing::Not;

namespace patchlab {
namespace {

using std::chrono::milliseconds;

SubprocessOptions Sh(std::string script) {
  SubprocessOptions o;
  o.argv = {"/bin/sh", "-c", std::move(script)};
  return o;
}

// Polls, for liveness only: a signal is delivered when the kernel gets to it.
bool EndsWithin(pid_t pid, milliseconds limit) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!HasEnded(pid)) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return true;
}

TEST(Subprocess, ReportsExitCodeAndCapturesBothStreams) {
  auto r = RunSubprocess(Sh("echo out; echo err >&2; exit 3"));
  ASSERT_OK(r);
  EXPECT_TRUE(r->status.exited);
  EXPECT_EQ(r->status.code, 3);
  EXPECT_FALSE(r->status.Success());
  EXPECT_EQ(r->stdout_data, "out\n");
  EXPECT_EQ(r->stderr_data, "err\n");
  EXPECT_EQ(r->status.ToString(), "exit 3");
}

TEST(Subprocess, TellsDeathBySignalFromExit) {
  auto r = RunSubprocess(Sh("kill -SEGV $$"));
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->status.exited);
  EXPECT_EQ(r->status.signal, SIGSEGV);
  EXPECT_THAT(r->status.ToString(), HasSubstr("SIGSEGV"));
}

TEST(Subprocess, TimeoutKillsTheWholeProcessGroup) {
  auto o = Sh("trap '' TERM; sleep 30 & sleep 30; wait");
  o.timeout = std::chrono::milliseconds(200);
  o.kill_grace = std::chrono::milliseconds(100);
  auto r = RunSubprocess(o);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->status.timed_out);
  EXPECT_FALSE(r->status.exited);
  EXPECT_EQ(r->status.signal, SIGKILL);
  EXPECT_LT(r->wall, std::chrono::seconds(10));
}

TEST(Subprocess, TimeoutWithTermHonoured) {
  auto o = Sh("sleep 30");
  o.timeout = std::chrono::milliseconds(100);
  auto r = RunSubprocess(o);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->status.timed_out);
  EXPECT_EQ(r->status.signal, SIGTERM);
}

TEST(Subprocess, CapturesLargeOutputWithoutDeadlock) {
  // 8 MiB on stdout and 1 MiB on stderr at once: far past a pipe's buffer.
  auto r = RunSubprocess(Sh("head -c 8388608 /dev/zero; head -c 1048576 /dev/zero >&2"));
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->status.Success());
  EXPECT_EQ(r->stdout_data.size(), 8u << 20);
  EXPECT_EQ(r->stderr_data.size(), 1u << 20);
}

TEST(Subprocess, PassesStdinEnvAndCwd) {
  auto o = Sh("cat; printf '%s' \"$PL_TEST_VAR\"; pwd");
  o.stdin_data = "hello ";
  o.env_set = {{"PL_TEST_VAR", "world"}};
  o.cwd = "/tmp";
  auto r = RunSubprocess(o);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->stdout_data, "hello world/tmp\n");
}

TEST(Subprocess, ClearEnvKeepsOnlyGivenVariables) {
  auto o = Sh("env");
  o.clear_env = true;
  o.env_set = {{"ONLY", "1"}};
  auto r = RunSubprocess(o);
  ASSERT_TRUE(r.has_value());
  EXPECT_THAT(r->stdout_data, HasSubstr("ONLY=1"));
  EXPECT_THAT(r->stdout_data, Not(HasSubstr("HOME=")));
}

TEST(Subprocess, WritesOutputToFile) {
  std::string path = ::testing::TempDir() + "/subprocess_out.txt";
  auto o = Sh("echo to-file; echo also >&2");
  o.stdout_mode = OutputMode::kFile;
  o.stdout_path = path;
  o.stderr_to_stdout = true;
  auto r = RunSubprocess(o);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*ReadFile(path), "to-file\nalso\n");
}

TEST(Subprocess, MissingProgramIsAnErrorNamingIt) {
  SubprocessOptions o;
  o.argv = {"/nonexistent/program"};
  auto r = RunSubprocess(o);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kNotFound);
  EXPECT_THAT(r.error().ToString(), HasSubstr("/nonexistent/program"));
}

TEST(Subprocess, DestructorKillsARunningChild) {
  pid_t pid;
  {
    auto sp = Subprocess::Start(Sh("sleep 30"));
    ASSERT_TRUE(sp.has_value());
    pid = sp->pid();
    EXPECT_EQ(::kill(pid, 0), 0);
  }
  EXPECT_EQ(::kill(pid, 0), -1);
  EXPECT_EQ(errno, ESRCH);
}

TEST(Subprocess, SignalReachesTheChild) {
  auto sp = Subprocess::Start(Sh("sleep 30"));
  ASSERT_TRUE(sp.has_value());
  ASSERT_TRUE(sp->Signal(SIGUSR1).has_value());
  auto r = sp->Wait();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status.signal, SIGUSR1);
}

// A lab or test binary killed outright (SIGKILL from a ctest timeout) must not
// leave the programs it started running: a process that started `sleep 1000`
// through Subprocess is killed, and the sleep must end too.
TEST(Subprocess, ChildDiesWhenTheProcessThatStartedItIsKilled) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  ScopedFd report_read(fds[0]);
  ScopedFd report_write(fds[1]);
  const pid_t test_pid = ::getpid();
  const pid_t starter = ::fork();
  ASSERT_GE(starter, 0);
  if (starter == 0) {
    // This test binary runs no other thread, so the child may allocate.
    DieWithParent(test_pid);
    SubprocessOptions o;
    o.argv = {"sleep", "1000"};
    o.stdout_mode = OutputMode::kNull;
    o.stderr_mode = OutputMode::kNull;
    auto sleeper = Subprocess::Start(std::move(o));
    pid_t pid = sleeper ? sleeper->pid() : -1;
    [[maybe_unused]] ssize_t n = ::write(report_write.get(), &pid, sizeof pid);
    for (;;) ::pause();  // until killed, its Subprocess never destroyed
  }
  report_write.Reset();
  pid_t sleeper = -1;
  ssize_t n = ::read(report_read.get(), &sleeper, sizeof sleeper);

  ::kill(starter, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(starter, &status, 0), starter);
  ASSERT_EQ(n, static_cast<ssize_t>(sizeof sleeper));
  ASSERT_GT(sleeper, 0) << "the starter could not start sleep";
  bool ended = EndsWithin(sleeper, milliseconds(10000));
  if (!ended) ::kill(sleeper, SIGKILL);  // leave nothing behind, even failing
  EXPECT_TRUE(ended) << "sleep (pid " << sleeper << ") outlived the process that started it";
}

// The edge the header warns of: the signal follows the thread that called
// Start(), not the process. A child started from a thread that has returned is
// killed though this process lives on.
TEST(Subprocess, ChildStartedFromAThreadThatReturnedIsKilled) {
  std::optional<Subprocess> sleeper;
  std::thread starter([&] {
    SubprocessOptions o;
    o.argv = {"sleep", "1000"};
    o.timeout = milliseconds(10000);  // only when the kill never comes
    auto started = Subprocess::Start(std::move(o));
    if (started) sleeper.emplace(std::move(*started));
  });
  starter.join();
  ASSERT_TRUE(sleeper.has_value());
  auto r = sleeper->Wait();
  ASSERT_OK(r);
  EXPECT_FALSE(r->status.timed_out);
  EXPECT_EQ(r->status.signal, SIGKILL) << r->status.ToString();
}

}  // namespace
}  // namespace patchlab

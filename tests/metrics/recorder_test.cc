// Whether a run's recorder still runs: judged by host, boot id, pid namespace,
// pid and the pid's start time, never by the pid alone. Real processes: this
// test's own, and children it starts and kills.
#include "metrics/internal/recorder.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/file_util.h"
#include "base/parent_death.h"
#include "metrics/compat_db.h"
#include "tests/metrics/test_util.h"
#include "tests/support/status_matchers.h"

using ::testing::HasSubstr;

namespace patchlab::metrics {
namespace {

using internal::ProcessStartTicks;
using testing::OpenSeeded;
using testing::ScratchDir;

// A child that waits until killed, by the test or by this process's death.
pid_t Sleeper() {
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    DieWithParent(parent);
    for (;;) pause();
  }
  return pid;
}

TEST(Recorder, ALiveRecorderKeepsItsRunAndItsDeathEndsIt) {
  ScratchDir dir;
  CompatDb db = OpenSeeded(dir / "lab.db");
  pid_t child = Sleeper();
  ASSERT_GT(child, 0);
  auto run = db.BeginRun(RunInfo{.pid = child});
  ASSERT_OK(run);
  auto info = db.GetRun(*run);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->pid, child);
  EXPECT_EQ(info->pid_start, ProcessStartTicks(child).value_or(-1));
  EXPECT_FALSE(info->boot_id.empty());
  EXPECT_FALSE(info->pid_ns.empty());
  EXPECT_EQ(info->status, RunStatus::kRunning);
  EXPECT_EQ(db.MarkAbandonedRuns().value_or(-1), 0);
  auto resume = db.ResumeRun(*run);
  ASSERT_FALSE(resume.has_value());
  EXPECT_THAT(resume.error().message(), HasSubstr(fmt::format("recording process {} on", child)))
      << resume.error().ToString();
  EXPECT_THAT(resume.error().message(), HasSubstr("still running")) << resume.error().ToString();

  // Killed but not reaped yet (a zombie) is dead too.
  ASSERT_EQ(kill(child, SIGKILL), 0);
  siginfo_t info_exit{};
  ASSERT_EQ(waitid(P_PID, static_cast<id_t>(child), &info_exit, WEXITED | WNOWAIT), 0);
  info = db.GetRun(*run);  // readers see it at once
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->status, RunStatus::kIncomplete);
  EXPECT_THAT(info->note, HasSubstr(fmt::format("recording process {} on", child))) << info->note;
  EXPECT_EQ(db.MarkAbandonedRuns().value_or(-1), 1);
  waitpid(child, nullptr, 0);
  EXPECT_TRUE(db.ResumeRun(*run).has_value());
  info = db.GetRun(*run);
  EXPECT_EQ(info->pid, getpid());
  EXPECT_EQ(info->pid_start, ProcessStartTicks(getpid()).value_or(-1));
  EXPECT_EQ(info->status, RunStatus::kRunning);
}

TEST(Recorder, ARecycledPidIsNotTakenForTheRecorder) {
  ScratchDir dir;
  CompatDb db = OpenSeeded(dir / "lab.db");
  // This process's pid, but the recorder started at another time: the pid
  // has been given to someone else since.
  auto start = ProcessStartTicks(getpid());
  ASSERT_TRUE(start.has_value());
  auto run = db.BeginRun(RunInfo{.pid = getpid(), .pid_start = *start + 1});
  ASSERT_OK(run);
  EXPECT_EQ(db.MarkAbandonedRuns().value_or(-1), 1);
  auto info = db.GetRun(*run);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->status, RunStatus::kIncomplete);
  EXPECT_THAT(info->note, HasSubstr(fmt::format("pid {} is now another process", getpid())))
      << info->note;
  // The same pid with the right start time is the recorder.
  auto live = db.BeginRun(RunInfo{.pid = getpid()});
  ASSERT_TRUE(live.has_value());
  EXPECT_EQ(db.MarkAbandonedRuns().value_or(-1), 0);
  EXPECT_EQ(db.GetRun(*live)->status, RunStatus::kRunning);
}

TEST(Recorder, ARebootEndsEveryRunOfTheBootBefore) {
  ScratchDir dir;
  CompatDb db = OpenSeeded(dir / "lab.db");
  auto run =
      db.BeginRun(RunInfo{.pid = getpid(), .boot_id = "00000000-0000-0000-0000-000000000000"});
  ASSERT_OK(run);
  EXPECT_EQ(db.MarkAbandonedRuns().value_or(-1), 1);
  auto info = db.GetRun(*run);
  EXPECT_EQ(info->status, RunStatus::kIncomplete);
  EXPECT_THAT(info->note, HasSubstr("rebooted")) << info->note;
}

TEST(Recorder, AnotherHostsOrNamespacesRunIsNeitherAliveNorDeadHere) {
  ScratchDir dir;
  CompatDb db = OpenSeeded(dir / "lab.db");
  // Pid 1 exists here too: only the host name tells the runs apart.
  auto remote = db.BeginRun(RunInfo{.host = "elsewhere.example", .pid = 1});
  auto contained = db.BeginRun(RunInfo{.pid = getpid(), .pid_ns = "pid:[1]"});
  ASSERT_TRUE(remote.has_value() && contained.has_value());
  EXPECT_EQ(db.MarkAbandonedRuns().value_or(-1), 0);
  EXPECT_EQ(db.GetRun(*remote)->status, RunStatus::kRunning);
  EXPECT_EQ(db.GetRun(*contained)->status, RunStatus::kRunning);
  auto resume = db.ResumeRun(*remote);
  ASSERT_FALSE(resume.has_value());
  EXPECT_THAT(resume.error().message(), HasSubstr("recording process 1 on elsewhere.example"))
      << resume.error().ToString();
  EXPECT_THAT(resume.error().message(), HasSubstr("another host")) << resume.error().ToString();
  resume = db.ResumeRun(*contained);
  ASSERT_FALSE(resume.has_value());
  EXPECT_THAT(resume.error().message(), HasSubstr("pid namespace pid:[1]"))
      << resume.error().ToString();
}

TEST(Recorder, StartTicksComeFromProcStatEvenWithSpacesInTheName) {
  // A comm with spaces and parentheses must not shift the fields.
  const pid_t parent = getpid();
  pid_t child = fork();
  if (child == 0) {
    DieWithParent(parent);
    prctl(PR_SET_NAME, "x) (y z");
    for (;;) pause();
  }
  ASSERT_GT(child, 0);
  auto ours = ProcessStartTicks(getpid());
  ASSERT_TRUE(ours.has_value());
  // Wait until the child has renamed itself.
  for (int i = 0; i < 500; ++i) {
    auto comm = ReadFile(fmt::format("/proc/{}/comm", child));
    if (comm && comm->find("x) (y z") == 0) break;
    usleep(10000);
  }
  ASSERT_EQ(ReadFile(fmt::format("/proc/{}/comm", child)).value_or(""), "x) (y z\n");
  std::optional<int64_t> theirs = ProcessStartTicks(child);
  ASSERT_TRUE(theirs.has_value());
  EXPECT_GE(*theirs, *ours);  // started after this test process
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  EXPECT_FALSE(ProcessStartTicks(child).has_value());
}

}  // namespace
}  // namespace patchlab::metrics

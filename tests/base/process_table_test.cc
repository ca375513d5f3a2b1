// ProcessTable on real processes: a private copy of busybox started several
// times (so only this test's processes run that executable), some spinning,
// one idle; their CPU times add up to what each process's own clock says.
#include "base/process_table.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "base/parent_death.h"

namespace patchlab {
namespace {

namespace fs = std::filesystem;

class ProcessTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists("/bin/busybox")) GTEST_SKIP() << "needs /bin/busybox (busybox-static)";
    char tmpl[] = "/tmp/process-table-test-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    exe_ = dir_ / "spinner";
    fs::copy_file("/bin/busybox", exe_);
    fs::permissions(exe_, fs::perms::owner_all);
  }
  void TearDown() override {
    for (pid_t pid : pids_) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }
  // Starts the copy running `script` under its sh applet.
  pid_t Start(const char* script) {
    const pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid == 0) {
      DieWithParent(parent);
      ::execl(exe_.c_str(), "sh", "-c", script, nullptr);
      ::_exit(127);
    }
    pids_.push_back(pid);
    return pid;
  }
  fs::path dir_, exe_;
  std::vector<pid_t> pids_;
};

TEST_F(ProcessTableTest, FindsEveryProcessOfTheProgramWithItsCpuTime) {
  pid_t spin1 = Start("while :; do :; done");
  pid_t spin2 = Start("while :; do :; done");
  // Opening a FIFO nobody writes blocks forever: an idle process.
  ASSERT_EQ(::mkfifo((dir_ / "fifo").c_str(), 0600), 0);
  std::string idle_script = "read x < " + (dir_ / "fifo").string();
  pid_t idle = Start(idle_script.c_str());
  // Enough time for the spinners to burn measurable CPU even on a loaded host.
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  std::vector<ProcessCpu> procs = ProcessesRunning(exe_.string());
  ASSERT_EQ(procs.size(), 3u);
  EXPECT_EQ(procs[0].pid, std::min({spin1, spin2, idle}));
  uint64_t spinning = 0;
  for (const ProcessCpu& p : procs) {
    EXPECT_EQ(p.ppid, ::getpid());
    EXPECT_EQ(p.comm, "spinner");
    EXPECT_GT(p.start_ticks, 0u);
    if (p.pid == idle) {
      EXPECT_LT(p.cpu_ns, 50'000'000u) << "an idle process";
    } else {
      EXPECT_GT(p.cpu_ns, 1'000'000u) << "a spinning process";
      spinning += p.cpu_ns;
    }
  }
  // Time only grows: a later reading of the same processes is at least as large.
  std::vector<ProcessCpu> later = ProcessesRunning(exe_.string());
  ASSERT_EQ(later.size(), 3u);
  uint64_t spinning_later = 0;
  for (const ProcessCpu& p : later)
    if (p.pid != idle) spinning_later += p.cpu_ns;
  EXPECT_GE(spinning_later, spinning);

  // Another program's processes are not counted, and an ended one drops out.
  ::kill(spin1, SIGKILL);
  ::waitpid(spin1, nullptr, 0);
  std::vector<ProcessCpu> after = ProcessesRunning(exe_.string());
  ASSERT_EQ(after.size(), 2u);
  for (const ProcessCpu& p : after) EXPECT_NE(p.pid, spin1);
  EXPECT_TRUE(ProcessesRunning(dir_.string() + "/no-such-program").empty());
}

TEST_F(ProcessTableTest, AZombieIsNotCounted) {
  pid_t quick = Start("exit 0");
  // Not reaped yet: it stays a zombie until waitpid.
  for (int i = 0; i < 100; ++i) {
    if (ProcessesRunning(exe_.string()).empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_THAT(ProcessesRunning(exe_.string()), ::testing::IsEmpty());
  ::waitpid(quick, nullptr, 0);
  pids_.clear();
}

}  // namespace
}  // namespace patchlab

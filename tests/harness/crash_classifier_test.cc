// Kernel log lines as Linux 6.1 prints them, workload ends and VM events, to
// the crash kinds the lab records: the functions the runner's cell sequence
// calls for every crash it records.
#include "harness/vm/crash_classifier.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

namespace patchlab::harness {
namespace {

using metrics::CrashKind;
using ::testing::HasSubstr;
using ::testing::StartsWith;

TEST(CrashClassifier, UserSpaceFaultsFromTheKernelLog) {
  auto segv = ClassifyKernelLogLine(
      "[   12.345678] crasher[87]: segfault at 0 ip 0000558d2c3a1139 sp 00007ffd error 6 in "
      "crasher[558d2c3a1000+1000]");
  ASSERT_TRUE(segv);
  EXPECT_EQ(segv->kind, CrashKind::kSegfault);
  EXPECT_EQ(segv->pid, 87);
  EXPECT_THAT(segv->detail, StartsWith("crasher[87]")) << "timestamp stripped";
  auto trap = ClassifyKernelLogLine(
      "traps: kv[120] trap invalid opcode ip:401136 sp:7ffc error:0 in kv[401000+1000]");
  ASSERT_TRUE(trap);
  EXPECT_EQ(trap->kind, CrashKind::kTrap);
  EXPECT_EQ(trap->pid, 120);
  auto gp = ClassifyKernelLogLine("traps: a[5] general protection fault ip:1 sp:2 error:0");
  ASSERT_TRUE(gp);
  EXPECT_EQ(gp->kind, CrashKind::kGpf) << "the more specific pattern wins";
  EXPECT_EQ(gp->pid, 5);
  // print-fatal-signals: the workload's end by the signal is the crash, not
  // this line as well.
  EXPECT_FALSE(ClassifyKernelLogLine("potentially unexpected fatal signal 6."));
}

TEST(CrashClassifier, KernelFailuresAndOom) {
  EXPECT_EQ(ClassifyKernelLogLine("Kernel panic - not syncing: sysrq triggered crash")->kind,
            CrashKind::kPanic);
  EXPECT_EQ(ClassifyKernelLogLine("BUG: kernel NULL pointer dereference, address: 0000000000000000")
                ->kind,
            CrashKind::kBug);
  EXPECT_EQ(ClassifyKernelLogLine("Oops: 0002 [#1] PREEMPT SMP NOPTI")->kind, CrashKind::kOops);
  auto oom = ClassifyKernelLogLine("Out of memory: Killed process 311 (hog) total-vm:1000kB");
  ASSERT_TRUE(oom);
  EXPECT_EQ(oom->kind, CrashKind::kOom);
  EXPECT_EQ(oom->pid, 311);
  EXPECT_FALSE(ClassifyKernelLogLine("[    0.000000] Linux version 6.1.0-56-cloud-amd64"));
  EXPECT_FALSE(ClassifyKernelLogLine("random: crng init done"));
}

// Found by fuzz/kernel_log_fuzzer.cc: the guest writes these lines, and
// "Killed process -2" gave a crash with pid -2.
TEST(CrashClassifier, PidsAreUnsignedDigitsOrZero) {
  for (const char* line : {"Out of memory: Killed process -2 (hog)", "Oops: 1 pid: -7 x",
                           "Out of memory: Killed process +3 (hog)",
                           "Out of memory: Killed process 99999999999 (hog)"}) {
    auto crash = ClassifyKernelLogLine(line);
    ASSERT_TRUE(crash) << line;
    EXPECT_EQ(crash->pid, 0) << line;
  }
}

// The agent's /dev/kmsg records, joined as the runner joins them.
TEST(CrashClassifier, KernelLogLinesBecomeCrashes) {
  auto crashes = ClassifyKernelLog(
      "random: crng init done\n"
      "kvd[120]: segfault at 0 ip 0000 sp 0000 error 4 in kvd[1000+2000]\n"
      "traps: pricer[77] trap invalid opcode ip:401000 sp:7ffd error:0\n"
      "Out of memory: Killed process 55 (hog)\n"
      "Kernel panic - not syncing: Attempted to kill init!\n");
  ASSERT_EQ(crashes.size(), 4u);
  EXPECT_EQ(crashes[0].kind, CrashKind::kSegfault);
  EXPECT_EQ(crashes[1].kind, CrashKind::kTrap);
  EXPECT_EQ(crashes[2].kind, CrashKind::kOom);
  EXPECT_EQ(crashes[3].kind, CrashKind::kPanic);
}

// console.log: timestamps and "\r\n" line ends.
TEST(CrashClassifier, ConsoleTextFindsEveryCrashLine) {
  auto crashes = ClassifyKernelLog(
      "[    1.0] booting\r\n[    2.0] a[3]: segfault at 8 ip 1 sp 2 error 4\r\nok\n[    3.0] "
      "Kernel panic - not syncing: x\n");
  ASSERT_EQ(crashes.size(), 2u);
  EXPECT_EQ(crashes[0].kind, CrashKind::kSegfault);
  EXPECT_EQ(crashes[0].detail, "a[3]: segfault at 8 ip 1 sp 2 error 4") << "no timestamp, no \\r";
  EXPECT_EQ(crashes[1].kind, CrashKind::kPanic);
}

TEST(CrashClassifier, WorkloadExitsAndHangs) {
  EXPECT_FALSE(ClassifyWorkloadExit("kvd", 5, {.exited = true, .code = 0}));
  auto err = ClassifyWorkloadExit("kvd", 5, {.exited = true, .code = 2});
  ASSERT_TRUE(err);
  EXPECT_EQ(err->kind, CrashKind::kWorkloadExit);
  EXPECT_EQ(err->detail, "kvd exited 2");
  EXPECT_EQ(err->pid, 5);
  auto sig = ClassifyWorkloadExit("kvd", 5, {.exited = false, .signal = SIGABRT});
  ASSERT_TRUE(sig);
  EXPECT_EQ(sig->kind, CrashKind::kWorkloadSignal);
  EXPECT_THAT(sig->detail, HasSubstr("SIGABRT"));
  EXPECT_FALSE(ClassifyWorkloadExit("kvd", 5, {.exited = false, .signal = 0, .timed_out = true}));

  Crash hang = WorkloadHang("kvd", "completed no operation in a 500ms patched window");
  EXPECT_EQ(hang.kind, CrashKind::kLostHeartbeat);
  EXPECT_EQ(hang.detail, "kvd completed no operation in a 500ms patched window (hung)");
}

TEST(CrashClassifier, VmEvents) {
  auto now = std::chrono::steady_clock::now();
  auto panic = ClassifyVmEvent({VmEventKind::kGuestPanicked, "GUEST_PANICKED", now});
  ASSERT_TRUE(panic);
  EXPECT_EQ(panic->kind, CrashKind::kVmPanic);
  EXPECT_EQ(panic->detail, "GUEST_PANICKED");
  auto hung = ClassifyVmEvent({VmEventKind::kHeartbeatLost, "x", now});
  ASSERT_TRUE(hung);
  EXPECT_EQ(hung->kind, CrashKind::kLostHeartbeat);
  // A dead VM process or a closed channel is the lab's failure, not a crash.
  EXPECT_FALSE(ClassifyVmEvent({VmEventKind::kVmExited, "x", now}));
  EXPECT_FALSE(ClassifyVmEvent({VmEventKind::kAgentGone, "x", now}));
  auto crashes = ClassifyVmEvents({{VmEventKind::kAgentGone, "a", now},
                                   {VmEventKind::kGuestPanicked, "b", now},
                                   {VmEventKind::kHeartbeatLost, "c", now}});
  ASSERT_EQ(crashes.size(), 2u);
  EXPECT_EQ(crashes[0].detail, "b");
  EXPECT_EQ(crashes[1].detail, "c");
}

}  // namespace
}  // namespace patchlab::harness

// Kernel log lines as Linux 6.1 prints them, and VM events, to crash kinds.
#include "harness/vm/crash_classifier.h"

#include <gtest/gtest.h>
#include <signal.h>

namespace patchlab::harness {
namespace {

TEST(CrashClassifier, UserSpaceFaultsFromTheKernelLog) {
  auto segv = ClassifyKernelLogLine(
      "[   12.345678] crasher[87]: segfault at 0 ip 0000558d2c3a1139 sp 00007ffd error 6 in "
      "crasher[558d2c3a1000+1000]");
  ASSERT_TRUE(segv);
  EXPECT_EQ(segv->kind, CrashKind::kUserFault);
  EXPECT_EQ(segv->pid, 87);
  EXPECT_EQ(segv->detail.rfind("crasher[87]", 0), 0u) << "timestamp stripped";
  auto trap = ClassifyKernelLogLine(
      "traps: kv[120] trap invalid opcode ip:401136 sp:7ffc error:0 in kv[401000+1000]");
  ASSERT_TRUE(trap);
  EXPECT_EQ(trap->kind, CrashKind::kUserFault);
  EXPECT_EQ(trap->pid, 120);
  auto fatal = ClassifyKernelLogLine("potentially unexpected fatal signal 6.");
  ASSERT_TRUE(fatal);
  EXPECT_EQ(fatal->kind, CrashKind::kUserFault);
  auto gp = ClassifyKernelLogLine("traps: a[5] general protection fault ip:1 sp:2 error:0");
  ASSERT_TRUE(gp);
  EXPECT_EQ(gp->kind, CrashKind::kUserFault);
}

TEST(CrashClassifier, KernelFailuresAndOom) {
  EXPECT_EQ(ClassifyKernelLogLine("Kernel panic - not syncing: sysrq triggered crash")->kind,
            CrashKind::kKernelPanic);
  EXPECT_EQ(ClassifyKernelLogLine("BUG: kernel NULL pointer dereference, address: 0000000000000000")
                ->kind,
            CrashKind::kKernelOops);
  EXPECT_EQ(ClassifyKernelLogLine("Oops: 0002 [#1] PREEMPT SMP NOPTI")->kind,
            CrashKind::kKernelOops);
  auto oom = ClassifyKernelLogLine("Out of memory: Killed process 311 (hog) total-vm:1000kB");
  ASSERT_TRUE(oom);
  EXPECT_EQ(oom->kind, CrashKind::kOutOfMemory);
  EXPECT_EQ(oom->pid, 311);
  EXPECT_FALSE(ClassifyKernelLogLine("[    0.000000] Linux version 6.1.0-56-cloud-amd64"));
  EXPECT_FALSE(ClassifyKernelLogLine("random: crng init done"));
}

TEST(CrashClassifier, ConsoleTextFindsEveryCrashLine) {
  auto crashes = ClassifyConsoleText(
      "[    1.0] booting\r\n[    2.0] a[3]: segfault at 8 ip 1 sp 2 error 4\r\nok\n[    3.0] "
      "Kernel panic - not syncing: x\n");
  ASSERT_EQ(crashes.size(), 2u);
  EXPECT_EQ(crashes[0].kind, CrashKind::kUserFault);
  EXPECT_EQ(crashes[0].source, "console log");
  EXPECT_EQ(crashes[1].kind, CrashKind::kKernelPanic);
}

TEST(CrashClassifier, WorkloadExitsAndVmEvents) {
  EXPECT_FALSE(ClassifyWorkloadExit(5, {.exited = true, .code = 0}));
  auto err = ClassifyWorkloadExit(5, {.exited = true, .code = 2});
  ASSERT_TRUE(err);
  EXPECT_EQ(err->kind, CrashKind::kWorkloadError);
  auto sig = ClassifyWorkloadExit(5, {.exited = false, .signal = SIGABRT});
  ASSERT_TRUE(sig);
  EXPECT_EQ(sig->kind, CrashKind::kWorkloadSignal);
  EXPECT_NE(sig->detail.find("SIGABRT"), std::string::npos);
  EXPECT_FALSE(ClassifyWorkloadExit(5, {.exited = false, .signal = 0, .timed_out = true}));

  auto now = std::chrono::steady_clock::now();
  EXPECT_EQ(ClassifyVmEvent({VmEventKind::kGuestPanicked, "x", now}).kind, CrashKind::kKernelPanic);
  EXPECT_EQ(ClassifyVmEvent({VmEventKind::kHeartbeatLost, "x", now}).kind, CrashKind::kHung);
  EXPECT_EQ(ClassifyVmEvent({VmEventKind::kVmExited, "x", now}).kind, CrashKind::kVmDied);
  EXPECT_EQ(CrashKindName(CrashKind::kHung), "hung");
}

}  // namespace
}  // namespace patchlab::harness

// The QEMU backend on real VMs (TCG here): one cold boot for the suite, its
// ready state saved once, and every crash case on its own restored VM. The
// console, agent and QEMU logs of each VM stay under the test's artefacts dir.
#include "harness/vm/qemu_backend.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <thread>

#include "base/file_util.h"
#include "harness/vm/crash_classifier.h"
#include "harness/vm/internal/qemu_vm.h"
#include "tests/harness/vm_test_env.h"
#include "tests/support/status_matchers.h"

using ::testing::HasSubstr;

namespace patchlab::harness {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kCrasher[] = "/usr/bin/crasher";

class QemuBackendTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (skip_ = testing::MissingVmPrerequisite(); !skip_.empty()) return;
    artefacts_ = fs::temp_directory_path() / fmt::format("patchlab-qemu-test-{}", ::getpid());
    auto store = ImageStore::Open(testing::StoreOptions());
    ASSERT_OK(store);
    // The crash workload goes in through an overlay, as the runner's workloads do.
    auto overlay = store->MakeOverlay({{PATCHLAB_CRASHER_BINARY, kCrasher, 0755, true}});
    ASSERT_OK(overlay);
    auto base = store->Build("debian12-cloud");
    ASSERT_OK(base);
    auto image = store->ComposeInitrd(*base, *overlay);
    ASSERT_OK(image);
    image_ = new VmImage(*image);
    backend_ = new QemuBackend(QemuBackendOptions{});
    auto vm = backend_->Boot(*image_, Spec("boot"));
    ASSERT_OK(vm);
    booted_ = vm->release();
    auto state = backend_->SaveReady(*booted_, artefacts_ / "ready.state");
    ASSERT_OK(state);
    ready_ = new ReadyState(*state);
  }
  static void TearDownTestSuite() {
    delete booted_;
    delete ready_;
    delete backend_;
    delete image_;
    // Logs stay for a post-mortem; the saved state is large and goes.
    std::error_code ec;
    fs::remove(artefacts_ / "ready.state", ec);
  }
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ASSERT_NE(booted_, nullptr) << "the suite's VM did not boot";
    ASSERT_NE(ready_, nullptr);
  }

  static VmSpec Spec(const std::string& name) {
    VmSpec spec;
    spec.name = name;
    spec.cpu_model = "qemu64";
    spec.smp = 1;
    spec.memory_mib = 512;  // the image's own: its initramfs (~80 MB) unpacks into RAM
    spec.artefacts_dir = artefacts_ / name;
    return spec;
  }
  static std::unique_ptr<Vm> Restore(const std::string& name) {
    auto vm = backend_->RestoreReady(*ready_, Spec(name));
    EXPECT_OK(vm);
    return vm ? std::move(*vm) : nullptr;
  }

  static inline std::string skip_;
  static inline fs::path artefacts_;
  static inline VmImage* image_ = nullptr;
  static inline QemuBackend* backend_ = nullptr;
  static inline Vm* booted_ = nullptr;
  static inline ReadyState* ready_ = nullptr;
};

TEST_F(QemuBackendTest, BootsToAReadyAgentThatKeepsBeating) {
  auto hello = booted_->agent().Hello();
  ASSERT_OK(hello);
  EXPECT_EQ(hello->kernel, image_->kernel_release);
  EXPECT_EQ(hello->ncpus, 1);
  EXPECT_FALSE(hello->cpu_model.empty());
  uint64_t beats = booted_->agent().heartbeats();
  std::this_thread::sleep_for(milliseconds(2500));
  EXPECT_GT(booted_->agent().heartbeats(), beats);
  EXPECT_TRUE(booted_->PollEvents(seconds(10)).empty());
  auto console = ReadFile(booted_->console_log_path());
  ASSERT_TRUE(console);
  EXPECT_THAT(*console, HasSubstr("patchlab-init: starting the agent"));
  EXPECT_THAT(*console, HasSubstr("print-fatal-signals=1")) << "the command line is logged";
}

TEST_F(QemuBackendTest, FallsBackToTcgWhenKvmDoesNotWork) {
  KvmProbe probe = backend_->ChooseAccelerator(*image_, "qemu64");
  if (probe.accelerator == Accelerator::kKvm)
    GTEST_SKIP() << "KVM works on this host; no fallback to see";
  EXPECT_EQ(booted_->accelerator(), Accelerator::kTcg);
  EXPECT_FALSE(probe.reason.empty());
  EXPECT_THAT(booted_->Describe(), HasSubstr("tcg"));
}

TEST_F(QemuBackendTest, RestoredVmAnswersAndRunsWorkloads) {
  auto vm = Restore("restored");
  ASSERT_TRUE(vm);
  auto hello = vm->agent().Hello();
  ASSERT_OK(hello);
  auto source = booted_->agent().Hello();
  ASSERT_TRUE(source);
  EXPECT_EQ(hello->boot_id, source->boot_id) << "a restore continues the saved boot";
  auto run = vm->agent().Run({.argv = {kCrasher, "exit", "5"}}, seconds(30));
  ASSERT_OK(run);
  EXPECT_EQ(run->exit.code, 5);
  EXPECT_EQ(run->stdout_data, "crasher: exit\n");
  ASSERT_TRUE(vm->agent().Put("/tmp/put-test", 0644, "payload"));
  EXPECT_EQ(*vm->agent().Get("/tmp/put-test"), "payload");
  EXPECT_TRUE(vm->Shutdown(seconds(5)));
  EXPECT_FALSE(vm->Running());
}

TEST_F(QemuBackendTest, RestoreRefusesAMismatchedMachine) {
  VmSpec spec = Spec("mismatch");
  spec.memory_mib = 1024;  // saved with 512
  auto vm = backend_->RestoreReady(*ready_, spec);
  ASSERT_FALSE(vm);
  EXPECT_EQ(vm.error().code(), ErrorCode::kInvalidArgument);
}

// One restored VM for the user-space crash sources: segfault and abort.
TEST_F(QemuBackendTest, DetectsWorkloadSegfaultAndAbort) {
  auto vm = Restore("workload-crash");
  ASSERT_TRUE(vm);
  AgentClient& agent = vm->agent();
  auto mark = agent.KernelLogMark();
  ASSERT_OK(mark);

  auto segv = agent.Exec({.argv = {kCrasher, "segv"}});
  ASSERT_OK(segv);
  auto segv_exit = agent.Wait(*segv, seconds(30));
  ASSERT_OK(segv_exit);
  auto crash = ClassifyWorkloadExit("crasher", *segv, *segv_exit);
  ASSERT_TRUE(crash);
  EXPECT_EQ(crash->kind, metrics::CrashKind::kWorkloadSignal);
  EXPECT_EQ(segv_exit->signal, SIGSEGV);

  auto abrt = agent.Exec({.argv = {kCrasher, "abort"}});
  ASSERT_TRUE(abrt);
  auto abrt_exit = agent.Wait(*abrt, seconds(30));
  ASSERT_TRUE(abrt_exit);
  EXPECT_EQ(abrt_exit->signal, SIGABRT);
  auto abrt_crash = ClassifyWorkloadExit("crasher", *abrt, *abrt_exit);
  ASSERT_TRUE(abrt_crash);
  EXPECT_EQ(abrt_crash->kind, metrics::CrashKind::kWorkloadSignal);
  EXPECT_EQ(abrt_crash->detail, "crasher killed by SIGABRT");

  // The kernel log as the runner reads it: the agent's records, one per line.
  auto lines = agent.KernelLog(*mark);
  ASSERT_OK(lines);
  std::string kernel_log;
  for (const KernelLogLine& l : *lines) kernel_log += l.text + "\n";
  bool segfault_line = false, abort_line = false;
  for (const Crash& c : ClassifyKernelLog(kernel_log)) {
    if (c.kind == metrics::CrashKind::kSegfault && c.pid == *segv) segfault_line = true;
    if (c.detail.find("fatal signal 6") != std::string::npos) abort_line = true;
  }
  EXPECT_TRUE(segfault_line) << "no 'segfault at' line for pid " << *segv << ":\n" << kernel_log;
  // print-fatal-signals reports the abort, but the crash is the workload's end.
  EXPECT_THAT(kernel_log, HasSubstr("fatal signal 6"))
      << "no print-fatal-signals line for the abort";
  EXPECT_FALSE(abort_line) << "the fatal-signal line has no crash kind of its own";
  EXPECT_TRUE(vm->PollEvents(seconds(10)).empty()) << "the VM itself is fine";
}

TEST_F(QemuBackendTest, DetectsAGuestKernelPanic) {
  auto vm = Restore("panic");
  ASSERT_TRUE(vm);
  auto pid = vm->agent().Exec({.argv = {"/bin/sh", "-c", "echo c > /proc/sysrq-trigger"}});
  ASSERT_OK(pid);
  auto event = vm->WaitForEvent(seconds(60), seconds(30));
  ASSERT_TRUE(event) << "no event within 60 s";
  EXPECT_EQ(event->kind, VmEventKind::kGuestPanicked) << event->detail;
  auto crash = ClassifyVmEvent(*event);
  ASSERT_TRUE(crash);
  EXPECT_EQ(crash->kind, metrics::CrashKind::kVmPanic);
  // The console has the panic too, for the report.
  bool console_panic = false;
  for (int i = 0; i < 50 && !console_panic; ++i) {
    for (const Crash& c : ClassifyKernelLog(ReadFile(vm->console_log_path()).value_or(""))) {
      console_panic = console_panic || c.kind == metrics::CrashKind::kPanic;
    }
    if (!console_panic) std::this_thread::sleep_for(milliseconds(100));
  }
  EXPECT_TRUE(console_panic);
  EXPECT_TRUE(vm->Running()) << "panic=pause keeps the guest for inspection";
}

TEST_F(QemuBackendTest, DetectsAHungGuestByItsLostHeartbeat) {
  auto vm = Restore("hung");
  ASSERT_TRUE(vm);
  // Freeze the whole guest, as a hung host or a stuck kernel would: the VM
  // process lives on, the heartbeat stops.
  ASSERT_TRUE(vm->Pause());
  auto event = vm->WaitForEvent(seconds(60), seconds(3));
  ASSERT_TRUE(event) << "no event within 60 s";
  EXPECT_EQ(event->kind, VmEventKind::kHeartbeatLost) << event->detail;
  auto crash = ClassifyVmEvent(*event);
  ASSERT_TRUE(crash);
  EXPECT_EQ(crash->kind, metrics::CrashKind::kLostHeartbeat);
  auto hello = vm->agent().Hello(milliseconds(500));
  EXPECT_FALSE(hello);
  ASSERT_TRUE(vm->Cont());
  EXPECT_TRUE(vm->agent().Hello(seconds(30))) << "the guest carries on once resumed";
}

TEST_F(QemuBackendTest, DetectsQemuBeingKilled) {
  auto vm = Restore("killed");
  ASSERT_TRUE(vm);
  auto* qvm = dynamic_cast<internal::QemuVm*>(vm.get());
  ASSERT_NE(qvm, nullptr);
  ASSERT_EQ(::kill(qvm->pid(), SIGKILL), 0);
  auto event = vm->WaitForEvent(seconds(30), seconds(30));
  ASSERT_TRUE(event);
  EXPECT_EQ(event->kind, VmEventKind::kVmExited);
  EXPECT_THAT(event->detail, HasSubstr("SIGKILL")) << event->detail;
  EXPECT_FALSE(ClassifyVmEvent(*event)) << "a killed VM is the lab's failure, not a crash";
  auto hello = vm->agent().Hello(seconds(5));
  ASSERT_FALSE(hello);
  EXPECT_EQ(hello.error().code(), ErrorCode::kInfra) << hello.error().ToString();
}

}  // namespace
}  // namespace patchlab::harness

// Integration tests of the libvirt backend: real libvirtd daemons (started by
// the tests in their own mount namespaces, see libvirtd_fixture.h), real QEMU
// under TCG, the lab's real reference image and guest agent.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <thread>

#include "base/file_util.h"
#include "base/parent_death.h"
#include "harness/libvirt/fleet_backend.h"
#include "harness/libvirt/host_check.h"
#include "harness/libvirt/image_upload.h"
#include "harness/libvirt/libvirt_backend.h"
#include "harness/vm/image_store.h"
#include "tests/libvirt/libvirtd_fixture.h"
#include "tests/libvirt/test_image.h"
#include "tests/support/status_matchers.h"

using ::testing::HasSubstr;
using ::testing::Not;

namespace patchlab::harness {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using testing::LabImage;
using testing::PrivateLibvirtd;

constexpr milliseconds kHeartbeat{5000};

fs::path TestDir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / fmt::format("patchlab-lv-{}-{}", name, ::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::set<std::string> LiveDomains(LibvirtHost& host) {
  std::set<std::string> names;
  virDomainPtr* domains = nullptr;
  int n = virConnectListAllDomains(host.conn(), &domains, 0);
  for (int i = 0; i < n; ++i) {
    names.insert(virDomainGetName(domains[i]));
    virDomainFree(domains[i]);
  }
  free(domains);
  return names;
}

VmSpec Spec(const fs::path& dir, const std::string& name) {
  VmSpec s;
  s.name = name;
  s.memory_mib = 512;  // the image's own: its initramfs (~80 MB) unpacks into RAM
  s.artefacts_dir = dir / name;
  s.boot_timeout = milliseconds(90000);
  return s;
}

// One daemon and one backend shared by the single-host tests.
class LibvirtVmTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0) {
      skip_ = "needs root (private libvirtd in a mount namespace, QEMU as root)";
      return;
    }
    auto image = LabImage(PATCHLAB_SOURCE_DIR, PATCHLAB_AGENT_BINARY);
    if (!image) {
      skip_ = "no reference image: " + image.error().ToString();
      return;
    }
    dir_ = new fs::path(TestDir("suite"));
    auto d = PrivateLibvirtd::Start(*dir_ / "daemon");
    if (!d) {
      skip_ = "cannot start a private libvirtd: " + d.error().ToString();
      return;
    }
    daemon_ = d->release();
    LibvirtBackendOptions o;
    o.uri = daemon_->uri();
    o.accelerator =
        Accelerator::kTcg;  // KVM is probed in HostCheck; forced here to keep tests short
    auto b = LibvirtBackend::Open(o);
    ASSERT_OK(b);
    backend_ = b->release();
  }
  static void TearDownTestSuite() {
    delete backend_;
    backend_ = nullptr;
    delete daemon_;
    daemon_ = nullptr;
    // A failed test's console, agent log and domain XML stay for a post-mortem.
    if (dir_ != nullptr && ::testing::UnitTest::GetInstance()->failed_test_count() == 0)
      fs::remove_all(*dir_);
    if (dir_ != nullptr && ::testing::UnitTest::GetInstance()->failed_test_count() > 0) {
      std::fprintf(stderr, "artefacts kept in %s\n", dir_->c_str());
    }
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
  }
  void TearDown() override {
    if (backend_ != nullptr && !HasFailure()) {
      // Nothing may outlive a test: every domain is destroyed on every path.
      EXPECT_EQ(LiveDomains(*backend_->host()).size(), 0u);
    }
    if (HasFailure() && daemon_ != nullptr) {
      auto log = ReadFile(daemon_->log_path());
      if (log)
        std::fprintf(stderr, "libvirtd log tail:\n%s\n",
                     log->substr(log->size() > 4000 ? log->size() - 4000 : 0).c_str());
    }
  }

  static inline std::string skip_;
  static inline fs::path* dir_ = nullptr;
  static inline PrivateLibvirtd* daemon_ = nullptr;
  static inline LibvirtBackend* backend_ = nullptr;
};

TEST_F(LibvirtVmTest, BootsToTheAgentAndRecordsLibvirtFigures) {
  auto image = LabImage(PATCHLAB_SOURCE_DIR, PATCHLAB_AGENT_BINARY);
  VmSpec spec = Spec(*dir_, "boot");
  auto vm = backend_->Boot(*image, spec);
  ASSERT_OK(vm);
  auto hello = (*vm)->agent().Hello();
  ASSERT_OK(hello);
  EXPECT_EQ(hello->kernel, image->kernel_release);
  EXPECT_EQ((*vm)->accelerator(), Accelerator::kTcg);
  EXPECT_THAT((*vm)->Describe(), HasSubstr("libvirt domain patchlab-boot-")) << (*vm)->Describe();
  LibvirtVmInfo* info = AsLibvirtVm(**vm);
  ASSERT_NE(info, nullptr);
  EXPECT_EQ(info->HostName(), daemon_->uri());
  auto stats = info->Stats();
  ASSERT_OK(stats);
  EXPECT_EQ(stats->state, "running");
  EXPECT_GT(stats->cpu_time_ns, 0u);
  EXPECT_TRUE(stats->rss_kib.has_value());
  EXPECT_TRUE((*vm)->Running());
  EXPECT_TRUE((*vm)->PollEvents(kHeartbeat).empty());
  ASSERT_TRUE((*vm)->Shutdown(milliseconds(5000)).has_value());
  EXPECT_FALSE((*vm)->Running());
  // The figures and the console stay beside the cell.
  auto figures = ReadFile(spec.artefacts_dir / "libvirt-stats.json");
  ASSERT_TRUE(figures.has_value());
  EXPECT_THAT(*figures, HasSubstr("\"cpu_time_ns\"")) << *figures;
  auto console = ReadFile((*vm)->console_log_path());
  ASSERT_TRUE(console.has_value());
  EXPECT_THAT(*console, HasSubstr("Linux version"));
  vm->reset();
}

// The agent's serial port is a host pty carried over the libvirt connection
// (virDomainOpenConsole), not a socket on this machine: the way a remote
// host's guests are reached. Every request kind works, and keeps working on
// the domain restored after a save.
TEST_F(LibvirtVmTest, AgentAnswersOverTheLibvirtStreamAcrossSaveAndRestore) {
  auto image = LabImage(PATCHLAB_SOURCE_DIR, PATCHLAB_AGENT_BINARY);
  VmSpec spec = Spec(*dir_, "stream");
  auto vm = backend_->Boot(*image, spec);
  ASSERT_OK(vm);
  auto xml = ReadFile(spec.artefacts_dir / "domain.xml");
  ASSERT_TRUE(xml.has_value());
  EXPECT_THAT(*xml, HasSubstr("<serial type='pty'><target port='1'/></serial>")) << *xml;
  EXPECT_THAT(*xml, Not(HasSubstr("type='unix'")))
      << "an agent socket on the lab's file system: " << *xml;

  auto exercise = [](Vm& v, const std::string& when) {
    SCOPED_TRACE(when);
    auto hello = v.agent().Hello();
    ASSERT_OK(hello);
    EXPECT_EQ(hello->machine, "x86_64");
    ExecRequest echo;
    echo.argv = {"/bin/sh", "-c", "echo over-the-stream-$((6*7))"};
    auto ran = v.agent().Run(echo, milliseconds(20000));
    ASSERT_OK(ran);
    EXPECT_TRUE(ran->exit.exited && ran->exit.code == 0) << ran->exit.ToString();
    EXPECT_EQ(ran->stdout_data, "over-the-stream-42\n");
    ExecRequest sleeper;
    sleeper.argv = {"/bin/sleep", "30"};
    auto pid = v.agent().Exec(sleeper);
    ASSERT_OK(pid);
    auto sample = v.agent().Sample(*pid);
    ASSERT_OK(sample);
    EXPECT_EQ(sample->pid, *pid);
    EXPECT_GT(sample->rss_kib, 0u);
    ASSERT_TRUE(v.agent().Kill(*pid, SIGKILL).has_value());
    auto exit = v.agent().Wait(*pid, milliseconds(20000));
    ASSERT_OK(exit);
    EXPECT_FALSE(exit->exited);
    EXPECT_EQ(exit->signal, SIGKILL);
  };
  exercise(**vm, "booted");

  auto state = backend_->SaveReady(**vm, *dir_ / "states" / "stream.state");
  ASSERT_OK(state);
  exercise(**vm, "saved and restored in place");
  EXPECT_TRUE((*vm)->PollEvents(kHeartbeat).empty());
  vm->reset();

  auto restored = backend_->RestoreReady(*state, Spec(*dir_, "stream-restored"));
  ASSERT_OK(restored);
  exercise(**restored, "restored from the state file");
  // The agent log holds both directions of the stream.
  auto agent_log = ReadFile((*restored)->agent_log_path());
  ASSERT_TRUE(agent_log.has_value());
  EXPECT_THAT(*agent_log, HasSubstr("over-the-stream"));
  // When the domain goes, so does the stream: the agent channel closes.
  (*restored)->Kill();
  auto e = (*restored)->WaitForEvent(milliseconds(20000), kHeartbeat);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->kind, VmEventKind::kVmExited) << e->detail;
  std::optional<ErrorCode> after;
  for (int i = 0; i < 100 && !after; ++i) {
    auto hello = (*restored)->agent().Hello(milliseconds(100));
    if (!hello && hello.error().code() == ErrorCode::kInfra) after = hello.error().code();
  }
  EXPECT_TRUE(after.has_value()) << "the agent channel stayed open after the domain was destroyed";
}

// A host that does not share the lab's folders (qemu+ssh://) streams the
// console into the lab's console.log too; forced here on the local daemon.
TEST_F(LibvirtVmTest, StreamedConsoleLogIsWrittenByTheLab) {
  auto image = LabImage(PATCHLAB_SOURCE_DIR, PATCHLAB_AGENT_BINARY);
  LibvirtBackendOptions o;
  o.uri = daemon_->uri();
  o.accelerator = Accelerator::kTcg;
  o.console_log = ConsoleLogPlacement::kStreamed;
  auto streaming = LibvirtBackend::Open(o);
  ASSERT_OK(streaming);
  VmSpec spec = Spec(*dir_, "streamed-console");
  auto vm = (*streaming)->Boot(*image, spec);
  ASSERT_OK(vm);
  auto xml = ReadFile(spec.artefacts_dir / "domain.xml");
  ASSERT_TRUE(xml.has_value());
  EXPECT_THAT(*xml, HasSubstr("<serial type='pty'><target port='0'/></serial>")) << *xml;
  EXPECT_THAT(*xml, Not(HasSubstr("console.log")))
      << "the host was told to write the log: " << *xml;
  ASSERT_TRUE((*vm)->agent().Hello().has_value());
  // The kernel's first lines came through the stream: the domain started
  // paused until the stream was open.
  auto console = ReadFile((*vm)->console_log_path());
  ASSERT_TRUE(console.has_value());
  EXPECT_THAT(*console, HasSubstr("Linux version")) << *console;
  vm->reset();
}

// libvirt does not autodestroy restored domains: a lab killed while one runs
// leaves it running. The next lab that connects to the host destroys it,
// knowing from its metadata that its owner is dead.
TEST_F(LibvirtVmTest, DomainsOfAKilledLabAreDestroyedByTheNextOne) {
  auto image = LabImage(PATCHLAB_SOURCE_DIR, PATCHLAB_AGENT_BINARY);
  fs::path dir = *dir_ / "orphan";
  fs::create_directories(dir);
  int out[2];
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  std::vector<std::string> args = {PATCHLAB_OWNER_HELPER, daemon_->uri(), dir.string(),
                                   image->kernel.string(), image->initrd.string()};
  for (const auto& a : image->kernel_args) args.push_back(a);
  const pid_t test_pid = ::getpid();
  pid_t helper = ::fork();
  if (helper == 0) {
    DieWithParent(test_pid);  // the test kills it below; so does the test's death
    ::dup2(out[1], 1);
    std::vector<char*> argv;
    argv.reserve(args.size() + 1);
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ASSERT_GT(helper, 0);
  ::close(out[1]);
  std::string line;
  char c;
  while (::read(out[0], &c, 1) == 1 && c != '\n') line += c;
  ::close(out[0]);
  ::kill(helper, SIGKILL);
  int status = 0;
  ::waitpid(helper, &status, 0);
  ASSERT_EQ(line.rfind("patchlab-orphan-", 0), 0u)
      << "the helper did not get its VM running: '" << line << "'";

  // The killed lab's restored domain outlives it...
  std::this_thread::sleep_for(milliseconds(500));
  ASSERT_TRUE(LiveDomains(*backend_->host()).contains(line))
      << "no leak to clean up: the test proves nothing";
  // ...until a lab connects to the host.
  LibvirtBackendOptions o;
  o.uri = daemon_->uri();
  o.accelerator = Accelerator::kTcg;
  auto next = LibvirtBackend::Open(o);
  ASSERT_OK(next);
  EXPECT_FALSE(LiveDomains(*backend_->host()).contains(line))
      << line << " of a dead lab still runs";
}

TEST_F(LibvirtVmTest, GuestPanicIsACrashEvent) {
  auto image = LabImage(PATCHLAB_SOURCE_DIR, PATCHLAB_AGENT_BINARY);
  auto vm = backend_->Boot(*image, Spec(*dir_, "panic"));
  ASSERT_OK(vm);
  ExecRequest req;
  // The pause lets the agent's reply to the exec leave the guest first: a
  // panic in the same instant can take the reply with it (one vCPU, the
  // reply still in the serial port's queue), and Exec then times out.
  req.argv = {"/bin/sh", "-c", "sleep 1; echo c > /proc/sysrq-trigger"};
  auto pid = (*vm)->agent().Exec(req);
  ASSERT_OK(pid);
  std::optional<VmEvent> panic;
  for (int i = 0; i < 10 && !panic; ++i) {
    auto e = (*vm)->WaitForEvent(milliseconds(6000), milliseconds(60000));
    if (e && e->kind == VmEventKind::kGuestPanicked) panic = e;
  }
  ASSERT_TRUE(panic.has_value()) << "no panic event; console:\n"
                                 << ReadFile((*vm)->console_log_path()).value_or("");
  EXPECT_THAT(panic->detail, HasSubstr("panicked")) << panic->detail;
  vm->reset();
}

TEST_F(LibvirtVmTest, KilledVmIsAnExitEvent) {
  auto image = LabImage(PATCHLAB_SOURCE_DIR, PATCHLAB_AGENT_BINARY);
  auto vm = backend_->Boot(*image, Spec(*dir_, "kill"));
  ASSERT_OK(vm);
  (*vm)->Kill();
  auto e = (*vm)->WaitForEvent(milliseconds(20000), kHeartbeat);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->kind, VmEventKind::kVmExited) << e->detail;
  EXPECT_EQ(e->detail, "libvirt stopped/destroyed");
  EXPECT_TRUE((*vm)->PollEvents(kHeartbeat).empty()) << "one end, reported twice";
  EXPECT_FALSE((*vm)->Running());
  vm->reset();
}

TEST_F(LibvirtVmTest, SavedReadyStateRestoresAndGrowsCopiesForParallelVms) {
  auto image = LabImage(PATCHLAB_SOURCE_DIR, PATCHLAB_AGENT_BINARY);
  auto first = backend_->Boot(*image, Spec(*dir_, "save"));
  ASSERT_OK(first);
  auto state = backend_->SaveReady(**first, *dir_ / "states" / "ready.state");
  ASSERT_OK(state);
  EXPECT_EQ(state->backend, "libvirt");
  // The saved VM goes on running with a fresh agent connection.
  auto hello = (*first)->agent().Hello();
  ASSERT_OK(hello);
  std::string boot_id = hello->boot_id;
  first->reset();

  VmSpec restored_spec = Spec(*dir_, "restored-1");
  auto a = backend_->RestoreReady(*state, restored_spec);
  ASSERT_OK(a);
  auto ha = (*a)->agent().Hello();
  ASSERT_OK(ha);
  EXPECT_EQ(ha->boot_id, boot_id) << "not the saved guest";
  EXPECT_EQ((*a)->console_log_path(), fs::absolute(restored_spec.artefacts_dir / "console.log"));

  // While the first restore runs, a second needs its own copy of the state.
  auto b = backend_->RestoreReady(*state, Spec(*dir_, "restored-2"));
  ASSERT_OK(b);
  auto hb = (*b)->agent().Hello();
  ASSERT_OK(hb);
  EXPECT_EQ(LiveDomains(*backend_->host()).size(), 2u);
  EXPECT_TRUE(fs::exists(state->file.string() + ".1")) << "no second copy of the state";
  a->reset();
  b->reset();

  // Both copies free again: two restores at once, no boot.
  auto c = backend_->RestoreReady(*state, Spec(*dir_, "restored-3"));
  auto d = backend_->RestoreReady(*state, Spec(*dir_, "restored-4"));
  ASSERT_OK(c);
  ASSERT_OK(d);
  EXPECT_FALSE(fs::exists(state->file.string() + ".2")) << "a third copy was made";
  EXPECT_TRUE((*c)->agent().Hello().has_value());
  EXPECT_TRUE((*d)->agent().Hello().has_value());

  VmSpec wrong = Spec(*dir_, "wrong");
  wrong.memory_mib = 1024;  // saved with 512
  auto bad = backend_->RestoreReady(*state, wrong);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), ErrorCode::kInvalidArgument);
}

TEST_F(LibvirtVmTest, ImagesUploadOnceIntoThePoolAndBootFromIt) {
  auto image = LabImage(PATCHLAB_SOURCE_DIR, PATCHLAB_AGENT_BINARY);
  ImagePoolSpec pool;  // the daemon's private /var/lib/libvirt/images/patchlab
  uint64_t sent = 0;
  auto placed = UploadImage(*backend_->host(), pool, *image, &sent);
  ASSERT_OK(placed);
  EXPECT_GT(sent, 0u);
  EXPECT_EQ(placed->kernel.parent_path(), fs::path(pool.dir));
  uint64_t again = 1;
  auto second = UploadImage(*backend_->host(), pool, *image, &again);
  ASSERT_OK(second);
  EXPECT_EQ(again, 0u) << "an identical volume was sent again";
  EXPECT_EQ(second->kernel, placed->kernel);

  LibvirtBackendOptions o;
  o.uri = daemon_->uri();
  o.accelerator = Accelerator::kTcg;
  o.placement = ImagePlacement::kUpload;
  auto uploader = LibvirtBackend::Open(o);
  ASSERT_OK(uploader);
  VmSpec spec = Spec(*dir_, "from-pool");
  auto vm = (*uploader)->Boot(*image, spec);
  ASSERT_OK(vm);
  auto xml = ReadFile(spec.artefacts_dir / "domain.xml");
  ASSERT_TRUE(xml.has_value());
  EXPECT_THAT(*xml, HasSubstr("<kernel>" + placed->kernel.string() + "</kernel>")) << *xml;
  EXPECT_TRUE((*vm)->agent().Hello().has_value());
}

TEST_F(LibvirtVmTest, HostCheckPassesOnAWorkingHost) {
  auto image = LabImage(PATCHLAB_SOURCE_DIR, PATCHLAB_AGENT_BINARY);
  HostCheckOptions o;
  o.image = *image;
  o.force_upload = true;
  o.probe_kvm = false;
  HostCheckReport r = CheckHost(daemon_->uri(), o);
  std::string lines;
  for (const auto& l : r.lines) lines += l.check + ": " + l.detail + "\n";
  EXPECT_TRUE(r.usable()) << lines;
  ASSERT_EQ(r.lines.size(), 4u) << lines;
  EXPECT_THAT(r.lines[1].detail, HasSubstr("QEMU")) << lines;
}

// Two daemons stand in for two hosts: cells spread over both, and when one
// host goes down mid-run its VM ends and the next cells land on the other.
TEST(LibvirtFleet, SpreadsOverHostsAndSurvivesOneDroppingOut) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (private libvirtd in a mount namespace)";
  auto image = LabImage(PATCHLAB_SOURCE_DIR, PATCHLAB_AGENT_BINARY);
  if (!image) GTEST_SKIP() << "no reference image: " << image.error().ToString();
  fs::path dir = TestDir("fleet");
  auto a = PrivateLibvirtd::Start(dir / "host-a");
  ASSERT_OK(a);
  auto b = PrivateLibvirtd::Start(dir / "host-b");
  ASSERT_OK(b);

  FleetOptions o;
  o.uris = {(*a)->uri(), (*b)->uri()};
  o.per_host = 1;
  o.backend.accelerator = Accelerator::kTcg;
  auto fleet = FleetBackend::Open(o);
  ASSERT_OK(fleet);
  EXPECT_EQ((*fleet)->capacity(), 2);

  // Two cells at once: one per host (per_host = 1).
  auto vm1 = (*fleet)->Boot(*image, Spec(dir, "cell-1"));
  ASSERT_OK(vm1);
  auto vm2 = (*fleet)->Boot(*image, Spec(dir, "cell-2"));
  ASSERT_OK(vm2);
  std::string host1 = AsLibvirtVm(**vm1)->HostName();
  std::string host2 = AsLibvirtVm(**vm2)->HostName();
  EXPECT_NE(host1, host2) << "both cells on one host";
  EXPECT_TRUE((*vm1)->agent().Hello().has_value());
  EXPECT_TRUE((*vm2)->agent().Hello().has_value());

  // Host B goes down mid-run, with its VM.
  std::unique_ptr<Vm>& on_b = host1 == (*b)->uri() ? *vm1 : *vm2;
  std::unique_ptr<Vm>& on_a = host1 == (*b)->uri() ? *vm2 : *vm1;
  (*b)->Stop();
  std::optional<VmEvent> gone;
  for (int i = 0; i < 10 && !gone; ++i) {
    auto e = on_b->WaitForEvent(milliseconds(3000), milliseconds(60000));
    if (e && (e->kind == VmEventKind::kVmExited || e->kind == VmEventKind::kAgentGone)) gone = e;
  }
  ASSERT_TRUE(gone.has_value()) << "the VM on the stopped host did not end";
  EXPECT_FALSE(on_b->Running());
  on_b.reset();  // its slot is freed; the dead host takes no more

  // The run goes on: the retried cell waits for host A's slot, then runs there.
  std::thread finish_a([&] {
    std::this_thread::sleep_for(milliseconds(500));
    on_a.reset();
  });
  auto retry = (*fleet)->Boot(*image, Spec(dir, "cell-2-retry"));
  finish_a.join();
  ASSERT_OK(retry);
  EXPECT_EQ(AsLibvirtVm(**retry)->HostName(), (*a)->uri());
  EXPECT_TRUE((*retry)->agent().Hello().has_value());

  auto hosts = (*fleet)->Hosts();
  ASSERT_EQ(hosts.size(), 2u);
  EXPECT_TRUE(hosts[0].alive);
  EXPECT_FALSE(hosts[1].alive);
  EXPECT_FALSE(hosts[1].reason.empty());
  EXPECT_EQ(hosts[0].started + hosts[1].started, 3);
  retry->reset();
  auto check_a = LibvirtHost::Open((*a)->uri());
  ASSERT_TRUE(check_a.has_value());
  EXPECT_TRUE(LiveDomains(**check_a).empty()) << "a domain leaked on host A";
  fleet->reset();
  a->reset();
  fs::remove_all(dir);
}

// A host that went down and comes back takes VMs again: the fleet tries it
// again when a VM needs a slot (here at most every 200 ms).
TEST(LibvirtFleet, ADroppedHostIsReconnectedWhenItComesBack) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (private libvirtd in a mount namespace)";
  auto image = LabImage(PATCHLAB_SOURCE_DIR, PATCHLAB_AGENT_BINARY);
  if (!image) GTEST_SKIP() << "no reference image: " << image.error().ToString();
  fs::path dir = TestDir("reconnect");
  auto a = PrivateLibvirtd::Start(dir / "host-a");
  ASSERT_OK(a);
  auto b = PrivateLibvirtd::Start(dir / "host-b");
  ASSERT_OK(b);
  std::string uri_b = (*b)->uri();

  FleetOptions o;
  o.uris = {(*a)->uri(), uri_b};
  o.per_host = 1;
  o.backend.accelerator = Accelerator::kTcg;
  o.reconnect_interval = milliseconds(200);
  auto fleet = FleetBackend::Open(o);
  ASSERT_OK(fleet);

  // Host B goes down; the fleet notices (its close callback).
  (*b)->Stop();
  b->reset();
  for (int i = 0; i < 100 && (*fleet)->Hosts()[1].alive; ++i)
    std::this_thread::sleep_for(milliseconds(100));
  ASSERT_FALSE((*fleet)->Hosts()[1].alive) << "host B's end went unnoticed";

  // It comes back at the same URI: with host A's slot taken, the next VM can
  // only run if the fleet reconnects to B.
  auto b2 = PrivateLibvirtd::Start(dir / "host-b");
  ASSERT_OK(b2);
  ASSERT_EQ((*b2)->uri(), uri_b);
  auto on_a = (*fleet)->Boot(*image, Spec(dir, "cell-a"));
  ASSERT_OK(on_a);
  auto on_b = (*fleet)->Boot(*image, Spec(dir, "cell-b"));
  ASSERT_OK(on_b);
  EXPECT_EQ(AsLibvirtVm(**on_a)->HostName(), (*a)->uri());
  EXPECT_EQ(AsLibvirtVm(**on_b)->HostName(), uri_b);
  EXPECT_TRUE((*on_b)->agent().Hello().has_value());
  auto hosts = (*fleet)->Hosts();
  EXPECT_TRUE(hosts[1].alive) << hosts[1].reason;
  EXPECT_EQ(hosts[1].reconnects, 1);
  on_a->reset();
  on_b->reset();
  fleet->reset();
  b2->reset();
  a->reset();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace patchlab::harness

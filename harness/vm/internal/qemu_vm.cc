#include "harness/vm/internal/qemu_vm.h"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>

#include "base/file_util.h"
#include "base/log.h"

namespace patchlab::harness::internal {
namespace fs = std::filesystem;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

namespace {

// How long a closed agent channel waits for QEMU's exit to show (see CollectEvents).
constexpr milliseconds kExitAfterChannelClosed{1000};

std::string Tail(const fs::path& path, size_t bytes) {
  auto data = ReadFile(path);
  if (!data) return "(none)";
  if (data->size() > bytes) return "..." + data->substr(data->size() - bytes);
  return data->empty() ? "(empty)" : *data;
}

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : " ") + s;
  return out;
}

}  // namespace

std::vector<std::string> QemuCommandLine(const QemuLaunch& launch, const fs::path& socket_dir) {
  const VmSpec& spec = launch.spec;
  std::vector<std::string> kernel_args = launch.image.kernel_args;
  kernel_args.insert(kernel_args.end(), spec.extra_kernel_args.begin(),
                     spec.extra_kernel_args.end());
  std::vector<std::string> argv = {
      launch.qemu.string(),
      "-name",
      spec.name,
      "-machine",
      "pc",
      "-accel",
      launch.accelerator == Accelerator::kKvm ? "kvm" : "tcg",
      "-cpu",
      spec.cpu_model,
      "-smp",
      std::to_string(spec.smp),
      "-m",
      std::to_string(spec.memory_mib),
      "-nodefaults",
      "-no-reboot",
      "-display",
      "none",
      "-kernel",
      launch.image.kernel.string(),
      "-initrd",
      launch.image.initrd.string(),
      "-append",
      Join(kernel_args),
      // First serial port: the console, into a file. Second: the agent channel;
      // the host connects before the guest writes (what comes earlier is dropped).
      "-chardev",
      fmt::format("file,id=console,path={}", (spec.artefacts_dir / "console.log").string()),
      "-serial",
      "chardev:console",
      "-chardev",
      fmt::format("socket,id=agent,path={},server=on,wait=off",
                  (socket_dir / "agent.sock").string()),
      "-serial",
      "chardev:agent",
      "-chardev",
      fmt::format("socket,id=qmp,path={},server=on,wait=off", (socket_dir / "qmp.sock").string()),
      "-mon",
      "chardev=qmp,mode=control",
      // A panic shows as GUEST_PANICKED and the guest stays for inspection.
      "-device",
      "pvpanic",
      "-action",
      "panic=pause",
  };
  if (!launch.image.root_disk.empty()) {
    // Read-only, so parallel VMs share it (a shared lock) and a restored VM
    // finds the bytes its saved page cache came from.
    argv.push_back("-drive");
    argv.push_back(
        fmt::format("file={},format=raw,if=virtio,readonly=on", launch.image.root_disk.string()));
  }
  if (spec.count_instructions && launch.accelerator == Accelerator::kTcg) {
    argv.push_back("-icount");
    argv.push_back(kIcountOption);
  }
  if (launch.incoming) {
    argv.push_back("-incoming");
    argv.push_back(fmt::format("exec:cat {}", launch.incoming->string()));
  }
  return argv;
}

Result<std::unique_ptr<QemuVm>> QemuVm::Start(QemuLaunch launch) {
  std::unique_ptr<QemuVm> vm(new QemuVm(std::move(launch)));
  const VmSpec& spec = vm->launch_.spec;
  if (spec.artefacts_dir.empty())
    return Fail(ErrorCode::kInvalidArgument, "VmSpec.artefacts_dir is empty");
  if (auto s = MakeDirs(spec.artefacts_dir); !s) return std::unexpected(s.error());
  // Sockets live in a short private folder: sun_path holds 107 bytes, and
  // artefact folders can be deep.
  char tmpl[] = "/tmp/patchlab-vm-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return FailErrno("mkdtemp /tmp/patchlab-vm-XXXXXX");
  vm->socket_dir_ = tmpl;
  std::error_code ec;
  fs::remove(spec.artefacts_dir / "console.log", ec);

  SubprocessOptions opts;
  opts.argv = QemuCommandLine(vm->launch_, vm->socket_dir_);
  opts.stdout_mode = OutputMode::kFile;
  opts.stdout_path = (spec.artefacts_dir / "qemu.log").string();
  opts.stderr_to_stdout = true;
  {
    // The command line first in qemu.log, for post-mortems and hand reruns.
    std::string cmd;
    for (const auto& a : opts.argv)
      cmd += (a.find(' ') != std::string::npos ? "'" + a + "'" : a) + " ";
    (void)WriteFileAtomic(spec.artefacts_dir / "qemu.cmdline", cmd + "\n");
  }
  auto process = Subprocess::Start(std::move(opts));
  if (!process)
    return Fail(ErrorCode::kInfra, "{}: cannot start QEMU: {}", spec.name,
                process.error().ToString());
  vm->pid_ = process->pid();
  vm->process_.emplace(std::move(*process));
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, vm->pid_, 0));
  if (pidfd < 0) return FailErrno("pidfd_open qemu");
  vm->pidfd_.Reset(pidfd);

  AgentClientOptions agent_options;
  agent_options.log_path = vm->agent_log_path();
  agent_options.name = spec.name + " agent";
  // Connect the agent channel first: the guest's ready line is lost if nobody listens.
  auto deadline = Clock::now() + milliseconds(10000);
  while (true) {
    auto agent =
        AgentClient::Connect(vm->socket_dir_ / "agent.sock", agent_options, milliseconds(100));
    if (agent) {
      vm->agent_ = std::move(*agent);
      break;
    }
    if (vm->ProcessExited() || Clock::now() > deadline) {
      return Fail(ErrorCode::kInfra, "{}: QEMU never opened its agent socket: {}\n{}", spec.name,
                  agent.error().ToString(), vm->PostMortem());
    }
  }
  auto qmp = QmpClient::Connect(vm->socket_dir_ / "qmp.sock", milliseconds(10000));
  if (!qmp)
    return Fail(ErrorCode::kInfra, "{}: {}\n{}", spec.name, qmp.error().ToString(),
                vm->PostMortem());
  vm->qmp_ = std::move(*qmp);
  if (auto s = vm->WaitReady(vm->launch_.incoming.has_value()); !s)
    return std::unexpected(s.error());
  return vm;
}

Status QemuVm::WaitReady(bool restoring) {
  const VmSpec& spec = launch_.spec;
  auto deadline = Clock::now() + spec.boot_timeout;
  auto fail = [&](const std::string& why) {
    Kill();
    return Fail(ErrorCode::kInfra, "{}: {}\n{}", spec.name, why, PostMortem());
  };
  if (restoring) {
    // Bytes sent before the guest runs again are lost: wait for "running".
    while (true) {
      auto status = qmp_->QueryStatus();
      if (status && *status == "running") break;
      if (ProcessExited()) return fail("QEMU exited while restoring the saved state");
      if (status && *status != "inmigrate" && *status != "prelaunch" && *status != "restore-vm") {
        return fail("restored VM is '" + *status + "', not running");
      }
      if (Clock::now() > deadline) return fail("restore did not finish within the boot timeout");
      std::this_thread::sleep_for(milliseconds(5));
    }
    auto hello = agent_->Hello(std::chrono::duration_cast<milliseconds>(deadline - Clock::now()));
    if (!hello) return fail("agent did not answer after the restore: " + hello.error().ToString());
    return {};
  }
  while (true) {
    auto ready = agent_->WaitReady(milliseconds(200));
    if (ready) return {};
    if (ready.error().code() != ErrorCode::kTimeout) return fail(ready.error().ToString());
    if (ProcessExited())
      return fail(
          fmt::format("QEMU exited before the agent was ready ({})", exit_status_->ToString()));
    for (const QmpEvent& e : qmp_->TakeEvents()) {
      if (e.name == "GUEST_PANICKED") return fail("the guest kernel panicked while booting");
    }
    if (Clock::now() > deadline) {
      return fail(
          fmt::format("no ready line from the agent within {} ms", spec.boot_timeout.count()));
    }
  }
}

QemuVm::QemuVm(QemuLaunch launch)
    : launch_(std::move(launch)),
      events_([this](milliseconds heartbeat_threshold,
                     std::deque<VmEvent>& queue) { CollectEvents(heartbeat_threshold, queue); },
              // The process's end wakes the wait at once; QMP and the agent are polled.
              [this](milliseconds up_to) {
                pollfd p{pidfd_.get(), POLLIN, 0};
                ::poll(&p, 1, static_cast<int>(up_to.count()));
              },
              milliseconds(50)) {}

QemuVm::~QemuVm() {
  if (pid_ > 0) Kill();
  agent_.reset();
  qmp_.reset();
  std::error_code ec;
  if (!socket_dir_.empty()) fs::remove_all(socket_dir_, ec);
}

std::string QemuVm::Describe() const {
  return fmt::format("qemu pid {}, {}, {} x{}, {} MiB, {}{}", pid_, launch_.image.name,
                     launch_.spec.cpu_model, launch_.spec.smp, launch_.spec.memory_mib,
                     AcceleratorName(launch_.accelerator), CountsInstructions() ? ", icount" : "");
}

bool QemuVm::CountsInstructions() const {
  return launch_.spec.count_instructions && launch_.accelerator == Accelerator::kTcg;
}

std::string QemuVm::PostMortem() {
  return fmt::format("--- console.log (tail) ---\n{}\n--- qemu.log (tail) ---\n{}",
                     Tail(console_log_path(), 3000),
                     Tail(launch_.spec.artefacts_dir / "qemu.log", 2000));
}

bool QemuVm::ProcessExited() {
  std::lock_guard lock(mu_);
  if (exit_status_) return true;
  if (!process_) return true;
  pollfd p{pidfd_.get(), POLLIN, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  auto result = process_->Wait();  // returns at once: the process has ended
  exit_status_ = result ? result->status : ExitStatus{};
  return true;
}

bool QemuVm::Running() { return !ProcessExited(); }

void QemuVm::CollectEvents(milliseconds heartbeat_threshold, std::deque<VmEvent>& queue) {
  auto now = Clock::now();
  if (qmp_) {
    for (const QmpEvent& e : qmp_->TakeEvents()) {
      if (e.name == "GUEST_PANICKED" && !reported_panic_) {
        reported_panic_ = true;
        queue.push_back({VmEventKind::kGuestPanicked, "GUEST_PANICKED " + e.data.dump(), now});
      } else if (e.name == "SHUTDOWN") {
        shutdown_reason_ = e.data.value("reason", std::string());
      }
    }
  }
  bool exited = ProcessExited();
  if (!exited && !reported_agent_gone_ && agent_ && agent_->closed()) {
    // A killed QEMU closes its sockets before its exit shows on the pidfd, so
    // the channel's end may be seen first. Give the process a moment, so that
    // a dead VM is reported as one and not as a lost agent.
    pollfd p{pidfd_.get(), POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(kExitAfterChannelClosed.count()));
    exited = ProcessExited();
  }
  if (exited && !reported_exit_) {
    reported_exit_ = true;
    std::string detail = "qemu " + exit_status_->ToString();
    if (!shutdown_reason_.empty()) detail += ", shutdown reason " + shutdown_reason_;
    // Without a pvpanic driver in the guest, a panic shows only as panic=-1's
    // reset (QEMU exits under -no-reboot) and the console's last words.
    if (!reported_panic_ && shutdown_reason_ == "guest-reset") {
      auto console = ReadFile(console_log_path());
      if (console && console->find("Kernel panic") != std::string::npos) {
        reported_panic_ = true;
        queue.push_back(
            {VmEventKind::kGuestPanicked, "Kernel panic on the console, then " + detail, now});
      }
    }
    queue.push_back({VmEventKind::kVmExited, detail, now});
  }
  if (!exited && agent_ && agent_->closed() && !reported_agent_gone_) {
    reported_agent_gone_ = true;
    queue.push_back({VmEventKind::kAgentGone, agent_->close_reason(), now});
  }
  if (!exited && agent_ && !reported_panic_) {
    // A panicked guest is silent by design and already reported as such.
    bool lost = agent_->HeartbeatLost(heartbeat_threshold);
    if (lost && !heartbeat_lost_) {
      heartbeat_lost_ = true;
      queue.push_back(
          {VmEventKind::kHeartbeatLost,
           fmt::format("no line from the agent for {} ms", agent_->SinceLastHeard().count()), now});
    } else if (!lost) {
      heartbeat_lost_ = false;  // heard again: a later silence is a new event
    }
  }
}

std::vector<VmEvent> QemuVm::PollEvents(milliseconds heartbeat_threshold) {
  return events_.Poll(heartbeat_threshold);
}

std::optional<VmEvent> QemuVm::WaitForEvent(milliseconds timeout,
                                            milliseconds heartbeat_threshold) {
  return events_.Wait(timeout, heartbeat_threshold);
}

Status QemuVm::Pause() {
  if (!qmp_) return Fail(ErrorCode::kInfra, "{}: no QMP", launch_.spec.name);
  auto r = qmp_->Execute("stop");
  if (!r) return std::unexpected(r.error());
  return {};
}

Status QemuVm::Cont() {
  if (!qmp_) return Fail(ErrorCode::kInfra, "{}: no QMP", launch_.spec.name);
  auto r = qmp_->Execute("cont");
  if (!r) return std::unexpected(r.error());
  return {};
}

Status QemuVm::Shutdown(milliseconds grace) {
  if (ProcessExited()) return {};
  // busybox init ignores system_powerdown (ACPI): quit through QMP, then kill.
  if (qmp_ && !qmp_->closed()) (void)qmp_->Execute("quit", nullptr, grace);
  auto deadline = Clock::now() + grace;
  while (!ProcessExited() && Clock::now() < deadline) {
    pollfd p{pidfd_.get(), POLLIN, 0};
    ::poll(&p, 1, 20);
  }
  if (!ProcessExited()) Kill();
  return {};
}

void QemuVm::Kill() {
  if (ProcessExited()) return;
  // SAFETY of the signal: a pidfd names exactly our QEMU even if it was reaped
  // meanwhile and its pid reused.
  ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
  pollfd p{pidfd_.get(), POLLIN, 0};
  ::poll(&p, 1, 5000);
  ProcessExited();
}

}  // namespace patchlab::harness::internal

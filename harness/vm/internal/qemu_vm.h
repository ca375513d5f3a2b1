// QemuVm: one running qemu-system-x86_64 process and its channels (Vm).
// Made by QemuBackend; see qemu_backend.h for the command line and restore.
#pragma once

#include <chrono>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/scoped_fd.h"
#include "base/subprocess.h"
#include "harness/vm/internal/qmp_client.h"
#include "harness/vm/vm_backend.h"
#include "harness/vm/vm_event_queue.h"

namespace patchlab::harness::internal {

struct QemuLaunch {
  std::filesystem::path qemu;
  VmImage image;
  VmSpec spec;
  Accelerator accelerator = Accelerator::kTcg;
  std::optional<std::filesystem::path> incoming;  // restore from this saved state
};

class QemuVm : public Vm {
 public:
  // Starts QEMU and connects the QMP and agent channels; for a boot, waits for the
  // agent's ready line, for a restore, for "running" and an answer to hello.
  static Result<std::unique_ptr<QemuVm>> Start(QemuLaunch launch);
  ~QemuVm() override;

  AgentClient& agent() override { return *agent_; }
  const VmSpec& spec() const override { return launch_.spec; }
  const VmImage& image() const override { return launch_.image; }
  Accelerator accelerator() const override { return launch_.accelerator; }
  std::filesystem::path console_log_path() const override {
    return launch_.spec.artefacts_dir / "console.log";
  }
  std::filesystem::path agent_log_path() const override {
    return launch_.spec.artefacts_dir / "agent.log";
  }
  std::string Describe() const override;
  bool CountsInstructions() const override;

  std::vector<VmEvent> PollEvents(std::chrono::milliseconds heartbeat_threshold) override;
  std::optional<VmEvent> WaitForEvent(std::chrono::milliseconds timeout,
                                      std::chrono::milliseconds heartbeat_threshold) override;
  bool Running() override;
  Status Shutdown(std::chrono::milliseconds grace) override;
  void Kill() override;
  Status Pause() override;
  Status Cont() override;

  QmpClient& qmp() { return *qmp_; }
  pid_t pid() const { return pid_; }
  const QemuLaunch& launch() const { return launch_; }

 private:
  explicit QemuVm(QemuLaunch launch);
  Status WaitReady(bool restoring);
  bool ProcessExited();      // non-blocking; reaps once
  std::string PostMortem();  // tails of console.log and qemu.log

  QemuLaunch launch_;
  std::filesystem::path socket_dir_;
  std::optional<Subprocess> process_;
  ScopedFd pidfd_;
  pid_t pid_ = -1;
  std::unique_ptr<QmpClient> qmp_;
  std::unique_ptr<AgentClient> agent_;

  // The queue's collect step. REQUIRES: the queue's lock held (it guards the
  // reported_* flags, heartbeat_lost_ and shutdown_reason_).
  void CollectEvents(std::chrono::milliseconds heartbeat_threshold, std::deque<VmEvent>& queue);

  VmEventQueue events_;
  std::mutex mu_;
  std::optional<ExitStatus> exit_status_;
  bool reported_exit_ = false;
  bool reported_panic_ = false;
  bool reported_agent_gone_ = false;
  bool heartbeat_lost_ = false;
  std::string shutdown_reason_;
};

// QEMU's -icount argument for instruction-counting guests: guest time advances
// 2^2 = 4 ns per executed instruction (so a guest second is 250M instructions,
// near a TCG guest's real speed here), and never while the guest idles
// (sleep=off), so the host's load cannot stretch or shrink it.
inline constexpr const char* kIcountOption = "shift=2,sleep=off,align=off";

// The QEMU command line for `launch`, with sockets in `socket_dir`.
std::vector<std::string> QemuCommandLine(const QemuLaunch& launch,
                                         const std::filesystem::path& socket_dir);

}  // namespace patchlab::harness::internal

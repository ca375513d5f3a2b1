// CellGuest: the one machine a cell runs on, as the runner's cell sequence
// sees it. The QEMU adapter (a booted or restored VM, reached through the
// guest agent) and the host adapter (this machine's own processes, for
// `patchlab run --backend host` and the process-level tests) implement it; a
// unit test may fake it.
//
// Every call returns an Error with code kInfra when the machine itself failed
// (the VM died, the agent stopped answering): the runner records such a cell
// as an infrastructure failure, never as a patch failure.
//
// Thread-safety: one CellGuest belongs to one cell's thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/error.h"
#include "base/process_table.h"
#include "harness/lab/internal/runner_figures.h"
#include "harness/vm/agent_client.h"

namespace patchlab::harness::internal {

// The machine's calls are AgentClient's (harness/vm/agent_client.h), with its
// types and contracts, so the QEMU adapter passes them through and the host
// adapter does the same on this machine.
class CellGuest {
 public:
  virtual ~CellGuest() = default;

  // As AgentClient::Put: writes `bytes` to `guest_path` with `mode`.
  virtual Status Put(const std::string& guest_path, mode_t mode, std::string_view bytes) = 0;
  // As AgentClient::Get: the whole content of a guest file (kNotFound when absent).
  virtual Result<std::string> Get(const std::string& guest_path) = 0;
  // As AgentClient::Exec: starts a workload; returns its pid. On the host,
  // `request.env` adds to the lab's environment instead of replacing it.
  virtual Result<pid_t> Exec(const ExecRequest& request) = 0;
  // As AgentClient::Wait: waits up to `wait_for` for `pid` to end; a process
  // still running comes back with timed_out set (ExitStatus::StillRunning).
  virtual Result<ExitStatus> Wait(pid_t pid, std::chrono::milliseconds wait_for) = 0;
  virtual Status Kill(pid_t pid, int signal) = 0;
  // As AgentClient::Sample; the host fills the memory figures (pss, rss) only.
  virtual Result<ProcessSample> Sample(pid_t pid) = 0;
  // As AgentClient::Hotpatch: `hotpatch SUBCOMMAND ARGS... --json`. A non-zero
  // exit is a result (refused, rolled back), not an error of this call.
  virtual Result<HotpatchResult> Hotpatch(const std::string& subcommand,
                                          std::vector<std::string> args,
                                          std::chrono::milliseconds run_for) = 0;
  // As AgentClient::Run: runs `request` to completion, its output captured;
  // killed after `run_for` (exit.timed_out set). On the host, `request.env`
  // adds to the lab's environment.
  virtual Result<RunResult> Run(const ExecRequest& request, std::chrono::milliseconds run_for) = 0;
  // As AgentClient::Processes: every process running the executable `program`
  // (an absolute path), with its CPU time (base/process_table.h); empty when none runs.
  virtual Result<std::vector<ProcessCpu>> Processes(const std::string& program) = 0;

  // The kernel log written since the previous call (the first call: since
  // the machine was handed to the cell), one line per record.
  virtual Result<std::string> KernelLogSince() = 0;
  // Crashes of the machine itself seen so far: a panic event, a lost heartbeat.
  virtual std::vector<Crash> MachineCrashes() = 0;

  // The machine the cell runs on, recorded with it (a libvirt host URI); empty:
  // this lab machine.
  virtual std::string Host() const { return ""; }

  // The clock a target's CPU time is read on in this machine: instructions in
  // an instruction-counting guest, CPU time otherwise.
  virtual metrics::CpuClock Clock() const = 0;

  // Where guest-side scratch files go (e.g. "/tmp/cell"), created on start.
  virtual std::string ScratchDir() const = 0;
  // Stops the machine and keeps its logs (console, agent, kernel) in the
  // artefacts folder given at start. Idempotent.
  virtual Status Shutdown() = 0;
};

// What a cell runs on, for the factory.
struct GuestSpec {
  std::string image;
  std::string cpu;
  int vcpus = 2;
  int memory_mib = 256;
  std::filesystem::path artefacts;  // console.log, agent.log, kernel.log land here
  // Count guest instructions (one vCPU; VmSpec::count_instructions) where the
  // machine can: CPU figures the host's load cannot disturb.
  bool count_instructions = false;
};

class GuestFactory {
 public:
  virtual ~GuestFactory() = default;
  // Boots (or restores) a machine ready for a cell. kInfra when it cannot.
  virtual Result<std::unique_ptr<CellGuest>> Start(const GuestSpec& spec) = 0;
  // The CPU models to use for `image` when a scenario names none.
  virtual std::vector<std::string> DefaultCpus(const std::string& image) = 0;
  // Every image this factory can start, for scenarios that name none.
  virtual std::vector<std::string> Images() = 0;
  // Whether `image` is a default for a scenario that names none: a target
  // the lab builds runs on the small busybox images, a real application on
  // the images that are Debian systems (vm-images/README.md).
  virtual bool DefaultFor(const std::string& image, bool built_target) {
    (void)image;
    (void)built_target;
    return true;
  }
  // The image's kernel version and content hash, for the database, if known.
  virtual std::optional<std::pair<std::string, std::string>> Describe(const std::string& image) {
    (void)image;
    return std::nullopt;
  }
};

}  // namespace patchlab::harness::internal

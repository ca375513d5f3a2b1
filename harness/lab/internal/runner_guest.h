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
#include <utility>
#include <vector>

#include "base/error.h"
#include "base/process_table.h"
#include "harness/lab/internal/runner_figures.h"
#include "harness/vm/agent_client.h"

namespace patchlab::harness::internal {

// A command run to completion in the guest, its output captured.
struct GuestRun {
  GuestExit exit;
  std::string out;  // stdout
  std::string err;  // stderr
};

struct GuestSample {
  uint64_t pss_kib = 0;
  uint64_t rss_kib = 0;
};

// What the patch core in the guest answered: hotpatch's exit code contract
// (0 done, 2 usage, 3 refused, 4 rolled back, 5 target gone) and its --json.
struct GuestPatchAnswer {
  int exit_code = 0;
  std::string json;     // apply/verify --json output (may be empty on failure)
  std::string message;  // the reason, when it did not succeed
};

class CellGuest {
 public:
  virtual ~CellGuest() = default;

  // Copies a host file into the guest at `guest_path` with `mode`.
  virtual Status PutFile(const std::filesystem::path& host_path, const std::string& guest_path,
                         int mode) = 0;
  // The whole content of a guest file (kNotFound when absent).
  virtual Result<std::string> ReadFile(const std::string& guest_path) = 0;
  // Starts argv[0] (a guest path) with extra environment; stdout and stderr go
  // to `log_path` in the guest. Returns its pid.
  virtual Result<pid_t> Exec(const std::vector<std::string>& argv,
                             const std::vector<std::pair<std::string, std::string>>& env,
                             const std::string& log_path) = 0;
  // Waits up to `timeout` for `pid` to end; nullopt when it still runs.
  // (GuestExit is the agent protocol's; timed_out is never set here.)
  virtual Result<std::optional<GuestExit>> Wait(pid_t pid, std::chrono::milliseconds timeout) = 0;
  virtual Status Kill(pid_t pid, int signal) = 0;
  virtual Result<GuestSample> Sample(pid_t pid) = 0;
  // Runs argv (argv[0] looked up in PATH) in ScratchDir() until it ends, at
  // most `timeout` (then it is killed and exit.timed_out is set).
  virtual Result<GuestRun> Run(const std::vector<std::string>& argv,
                               std::chrono::milliseconds timeout) = 0;
  // Every process running the executable `program` (an absolute path), with
  // its CPU time (base/process_table.h); empty when none runs.
  virtual Result<std::vector<ProcessCpu>> Processes(const std::string& program) = 0;

  virtual Result<GuestPatchAnswer> Apply(pid_t pid, const std::string& package,
                                         const std::string& pubkey,
                                         std::chrono::milliseconds timeout) = 0;
  virtual Result<GuestPatchAnswer> Revert(pid_t pid, const std::string& patch_id) = 0;
  virtual Result<GuestPatchAnswer> Verify(pid_t pid) = 0;

  // The kernel log written since the previous call (the first call: since boot).
  virtual Result<std::string> KernelLogSince() = 0;
  // Crashes of the machine itself seen so far: a panic event, a lost heartbeat.
  virtual std::vector<Crash> MachineCrashes() = 0;

  // The machine the cell runs on, recorded with it (a libvirt host URI); empty:
  // this lab machine.
  virtual std::string Host() const { return ""; }

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

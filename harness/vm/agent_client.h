// AgentClient: the host's end of the channel to a guest agent (agent_protocol.h).
//
// It owns a connected stream socket (the VM's agent socket, or a socket to an
// agent running on the host in tests). A reader thread splits incoming lines,
// hands replies to the callers waiting for them, records heartbeats and child
// exits, and writes every line it receives to an optional agent log.
//
// Failure model: nothing here blocks without a deadline. Every call takes (or
// defaults) a timeout and returns kTimeout when it passes. When the channel
// closes (agent or VM gone) every pending and later call fails at once with
// kInfra. A line that is not a JSON object of the protocol fails the calls then
// pending with kInfra naming the line; later calls may succeed. A request the
// agent refused ({"ok": false}) fails with kIo (or kNotFound for a missing
// pid or file) carrying the agent's reason.
//
// Thread-safety: thread-safe; several threads may issue calls at once (e.g. one
// waits for a workload while another samples it).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/exit_status.h"
#include "base/process_table.h"
#include "base/scoped_fd.h"
#include "harness/vm/system_patch_summary.h"

namespace patchlab::harness {
namespace internal {
struct AgentLine;
}  // namespace internal

using std::chrono::milliseconds;

struct AgentHello {
  std::string agent_version;
  std::string kernel;     // uname -r
  std::string machine;    // uname -m
  std::string cpu_model;  // /proc/cpuinfo "model name"
  int ncpus = 0;
  double uptime_s = 0;
  std::string boot_id;  // /proc/sys/kernel/random/boot_id
};

struct ExecRequest {
  std::vector<std::string> argv;           // argv[0] absolute, or looked up in PATH
  std::map<std::string, std::string> env;  // the whole environment (PATH is added if absent)
  std::string cwd = "/";
  std::string stdout_path;  // guest path; empty: /run/out/PID.out
  std::string stderr_path;  // guest path; empty: /run/out/PID.err
};

struct RunResult {
  ExitStatus exit;
  std::string stdout_data;
  std::string stderr_data;
};

struct ProcessSample {
  pid_t pid = 0;
  uint64_t utime_ticks = 0;
  uint64_t stime_ticks = 0;
  int64_t clk_tck = 100;
  double utime_s = 0;
  double stime_s = 0;
  uint64_t rss_kib = 0;
  uint64_t pss_kib = 0;
  uint64_t private_dirty_kib = 0;
  double load1 = 0, load5 = 0, load15 = 0;
  double uptime_s = 0;  // guest uptime when sampled
};

struct KernelLogLine {
  uint64_t seq = 0;
  int level = 0;      // syslog level 0 (emerg) .. 7 (debug)
  uint64_t usec = 0;  // since boot
  std::string text;
};

// What `hotpatch SUBCOMMAND ... --json` said, run inside the guest. A non-zero
// exit code is a result (refused, rolled back), not an error of this call.
struct HotpatchResult {
  int exit_code = 0;
  bool exited = true;   // false: hotpatch itself died by a signal
  nlohmann::json json;  // parsed stdout; null when stdout was not JSON
  std::string stdout_data;
  std::string stderr_data;
};

struct AgentClientOptions {
  milliseconds default_timeout{30000};
  std::filesystem::path log_path;  // every line both ways, timestamped; empty: none
  std::string name = "agent";      // for messages: "vm cell-3 agent"
  // The hotpatch binary in the guest and the environment it runs with (beside
  // PATH). Tests running the agent on the host point them at the build tree
  // and a scratch HOTPATCH_STATE_DIR.
  std::string hotpatch_path = "/usr/bin/hotpatch";
  std::map<std::string, std::string> hotpatch_env;
};

// The system-wide form of Apply/Revert: every process in the guest that maps
// the package's module (`hotpatch apply|revert --system`).
struct SystemPatchRequest {
  std::string pubkey;           // apply: the guest path of the key to check the package with
  bool allow_unsigned = false;  // apply: accept an unsigned package (tests)
  // Only this process's descendants (e.g. the agent's own workloads); every
  // process of the guest when unset.
  std::optional<pid_t> descendants_of;
  // apply: go on patching processes that start meanwhile this long (--follow).
  milliseconds follow{0};
  // apply: revert the applied ones when any process refuses.
  bool all_or_nothing = false;
  int jobs = 0;  // processes at a time; 0: hotpatch's default (one per CPU)
};

// What a system-wide apply or revert did: hotpatch's exit and output, and
// the summary parsed from its JSON. Exit codes as docs/hotpatch.md: 0 every
// process, 3 some refused (nothing changed in them), 4 some rolled back.
struct SystemHotpatchResult {
  HotpatchResult run;
  SystemPatchSummary summary;
};

class AgentClient {
 public:
  // Takes a connected stream socket and starts the reader thread.
  static std::unique_ptr<AgentClient> Adopt(ScopedFd socket, AgentClientOptions options);
  // Connects to a listening unix socket (retrying until `timeout` while it does not
  // exist yet). Fails with kTimeout or kIo naming the path.
  static Result<std::unique_ptr<AgentClient>> Connect(const std::filesystem::path& socket_path,
                                                      AgentClientOptions options,
                                                      milliseconds timeout);
  // Stops the reader and closes the socket; pending calls fail with kInfra.
  ~AgentClient();
  AgentClient(const AgentClient&) = delete;
  AgentClient& operator=(const AgentClient&) = delete;

  // Waits for the agent's "ready" event (or any line proving it is alive after a
  // restore, see Hello). Fails with kTimeout or kInfra (channel closed).
  Status WaitReady(milliseconds timeout);

  Result<AgentHello> Hello(milliseconds timeout = milliseconds{0});
  // Starts a workload; returns its pid in the guest.
  Result<pid_t> Exec(const ExecRequest& request, milliseconds timeout = milliseconds{0});
  // Waits up to `wait_for` for the child `pid` to end. If it is still running the
  // result has timed_out = true and StillRunning() (the child keeps running).
  // Fails with kNotFound for a pid the agent did not start.
  Result<ExitStatus> Wait(pid_t pid, milliseconds wait_for);
  Status Kill(pid_t pid, int signal);
  // Runs a command to completion, capturing its output; kills it after `run_for`.
  Result<RunResult> Run(const ExecRequest& request, milliseconds run_for);
  Result<ProcessSample> Sample(pid_t pid);
  // Every process in the guest running the executable `exe` (an absolute
  // path), with its CPU time in ns (base/process_table.h); empty when none.
  Result<std::vector<ProcessCpu>> Processes(const std::string& exe);
  // Writes `bytes` to `guest_path` with `mode`, in chunks, replacing the file.
  Status Put(const std::string& guest_path, mode_t mode, std::string_view bytes);
  Result<std::string> Get(const std::string& guest_path);
  // The kernel log's current position, and its lines after a mark.
  Result<uint64_t> KernelLogMark();
  Result<std::vector<KernelLogLine>> KernelLog(uint64_t since_mark);
  // Asks the guest to sync and power off. Succeeds once the agent acknowledged.
  Status Shutdown();

  // Runs `hotpatch SUBCOMMAND ARGS... --json` in the guest (the image has it at
  // /usr/bin/hotpatch). Apply/Revert/Status/Verify are shorthands for the
  // patch core's command line: `hotpatch apply --pid PID PACKAGE`, `revert --pid
  // PID [PATCH_ID]`, `status --pid PID` (PatchStatus), `verify --pid PID`.
  Result<HotpatchResult> Hotpatch(const std::string& subcommand, std::vector<std::string> args,
                                  milliseconds run_for);
  Result<HotpatchResult> Apply(pid_t pid, const std::string& guest_package, milliseconds run_for);
  Result<HotpatchResult> Revert(pid_t pid, const std::string& patch_id, milliseconds run_for);
  Result<HotpatchResult> PatchStatus(pid_t pid, milliseconds run_for);
  Result<HotpatchResult> Verify(pid_t pid, milliseconds run_for);
  // `hotpatch apply --system PACKAGE` / `revert --system PATCH_ID` in the
  // guest. A refusal or rollback in some processes is a result (see the
  // summary and the exit code). Fails with kTimeout past `run_for`, kInfra
  // when hotpatch cannot run; when it printed no summary, with hotpatch's
  // reason: kRefused (exit 3: e.g. a module no process maps, naming it and its
  // build-id) or kInvalidArgument (a bad package, a patch live in no process);
  // kParse when the summary is not one.
  Result<SystemHotpatchResult> ApplySystem(const std::string& guest_package,
                                           const SystemPatchRequest& request, milliseconds run_for);
  Result<SystemHotpatchResult> RevertSystem(const std::string& patch_id,
                                            const SystemPatchRequest& request,
                                            milliseconds run_for);

  // Heartbeats: how long since the last line of any kind from the agent, and
  // whether that exceeds `threshold` (a hung guest or agent). Before the first
  // line, counts from construction.
  milliseconds SinceLastHeard() const;
  bool HeartbeatLost(milliseconds threshold) const;
  uint64_t heartbeats() const;
  // True once the channel closed (EOF or error); the reason says which.
  bool closed() const;
  std::string close_reason() const;
  // Exits of children the agent reported by event, oldest first, since the last call.
  std::vector<std::pair<pid_t, ExitStatus>> TakeExitEvents();
  // Lines that were not protocol messages, for the report (the last few kept).
  std::vector<std::string> garbage_lines() const;

  // Sends a raw request and returns the reply object (ok already checked).
  Result<nlohmann::json> Call(nlohmann::json request, milliseconds timeout);

 private:
  struct State;
  explicit AgentClient(ScopedFd socket, AgentClientOptions options);
  void ReaderLoop();
  void HandleLine(const std::string& line);
  // An event line: ready, heartbeat, exit (recorded), error (logged); fails
  // when its fields break the protocol. REQUIRES: state_->mu held.
  Status HandleEvent(const internal::AgentLine& msg);
  Result<SystemHotpatchResult> HotpatchSystem(const std::string& subcommand,
                                              std::vector<std::string> args,
                                              const SystemPatchRequest& request,
                                              milliseconds run_for);

  AgentClientOptions options_;
  std::unique_ptr<State> state_;
};

}  // namespace patchlab::harness

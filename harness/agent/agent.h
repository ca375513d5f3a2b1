// Agent: the guest side of the lab's channel (harness/protocol/agent_protocol.h).
//
// One thread, one poll loop over the channel, a signalfd for SIGCHLD, the
// capture pipes of `run` children and a heartbeat timer. It starts workloads,
// reaps every child (it is PID 1 in the guest, so orphans too), answers
// requests, and never blocks on one request: `wait` and `run` replies are
// deferred until the child ends or the deadline passes. Its children die with
// it (SIGKILL, base/parent_death.h), also when it is killed.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "harness/agent/agent_request.h"

namespace patchlab::agent {

using Clock = std::chrono::steady_clock;

struct AgentOptions {
  int channel_fd = -1;                 // connected, read/write
  bool serial = false;                 // a tty: repeat "ready" until the first request
  bool power_off_on_shutdown = false;  // PID 1 in a guest: reboot(POWER_OFF)
  std::string kmsg_path = "/dev/kmsg";
  std::string output_dir = "/run/out";
};

class Agent {
 public:
  explicit Agent(AgentOptions options);
  // Runs until the channel closes or a shutdown request; returns the exit code.
  int Run();

 private:
  struct Child {
    pid_t pid = 0;
    bool ended = false;
    int status = 0;  // waitpid status
    // `run` children: captured output and the pending reply.
    bool capture = false;
    int out_fd = -1, err_fd = -1;
    std::string out, err;
    std::optional<uint64_t> run_reply_id;
    Clock::time_point deadline{};
    bool killed_for_timeout = false;
  };
  struct Waiter {
    uint64_t id;
    pid_t pid;
    Clock::time_point deadline;
  };

  void Send(const nlohmann::json& message);
  void HandleInput();
  void HandleLine(const std::string& line);
  // A decoded request's reply, or *deferred when it comes later (wait, run,
  // shutdown). Requests arrive checked (agent_request.h): nothing here throws.
  nlohmann::json Dispatch(const AgentRequest& request, bool* deferred);
  nlohmann::json OpExec(const AgentRequest& request, bool* deferred);
  nlohmann::json OpWait(const AgentRequest& request, bool* deferred);
  nlohmann::json OpPut(const AgentRequest& request);
  nlohmann::json OpGet(const AgentRequest& request);
  nlohmann::json OpKernelLog(const AgentRequest& request);
  void ReapChildren();
  void DrainCapture(Child& child, bool to_eof);
  void FinishRun(Child& child);
  void CheckDeadlines();
  nlohmann::json ExitFields(const Child& child) const;
  int NextTimeoutMs() const;
  void Heartbeat();

  AgentOptions options_;
  int sigchld_fd_ = -1;
  int timer_fd_ = -1;
  std::string inbuf_;
  bool got_request_ = false;
  bool stop_ = false;
  uint64_t heartbeat_seq_ = 0;
  std::map<pid_t, Child> children_;
  std::vector<Waiter> waiters_;
};

// Sets a serial tty to raw 8-bit mode without echo or line editing.
bool MakeRaw(int fd, std::string* error);

}  // namespace patchlab::agent

// ExitStatus: how a process ended, or that it has not ended yet. The one exit
// type of the lab: a host Subprocess (base/subprocess.h) and a guest process
// the agent ran or waited for (harness/vm/agent_client.h) both report one.
//
// Plain value type; thread-safety: as any value.
#pragma once

#include <string>

namespace patchlab {

struct ExitStatus {
  bool exited = false;  // returned from main or called exit
  int code = 0;         // with exited
  int signal = 0;       // when killed by a signal
  bool core_dumped = false;
  // The deadline of the wait passed. A Subprocess, or a command the agent
  // runs to completion, was then killed (signal set); a guest process the
  // agent was only asked to wait for keeps running (neither exited nor signal).
  bool timed_out = false;

  bool Success() const { return exited && code == 0 && !timed_out; }
  // Neither exited nor killed: a wait that timed out on a live process.
  bool StillRunning() const { return !exited && signal == 0; }
  // "exit 0", "exit 3", "killed by SIGSEGV (core dumped)",
  // "timed out, killed by SIGKILL", "still running"
  std::string ToString() const;
};

// Name of a signal: "SIGSEGV"; "signal 64" for one without a name.
std::string SignalName(int sig);

}  // namespace patchlab

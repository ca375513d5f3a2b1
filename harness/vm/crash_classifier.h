// Crash classification: from the raw signals a VM gives (a workload's exit, the
// kernel log, backend events) to the kinds of crash the lab records.
//
// Sources and what they become:
//   workload killed by a signal           -> kWorkloadSignal (SIGSEGV, SIGABRT, ...)
//   workload exit code != 0               -> kWorkloadError
//   kernel log "segfault at", "traps:", "general protection fault",
//     "potentially unexpected fatal signal" (print-fatal-signals)
//                                         -> kUserFault
//   kernel log "Oops", "BUG:", "WARNING:" in kernel code
//                                         -> kKernelOops
//   kernel log "Kernel panic"             -> kKernelPanic
//   kernel log "Out of memory: Killed process" -> kOutOfMemory
//   VmEventKind::kGuestPanicked           -> kKernelPanic
//   VmEventKind::kHeartbeatLost           -> kHung
//   VmEventKind::kAgentGone / kVmExited   -> kVmDied
//
// Kernel log lines are matched on the text after the timestamp, so both the
// agent's /dev/kmsg records and console.log lines ("[    1.234] ...") work.
//
// Thread-safety: pure functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "harness/vm/agent_client.h"
#include "harness/vm/vm_backend.h"

namespace patchlab::harness {

enum class CrashKind {
  kWorkloadSignal,
  kWorkloadError,
  kUserFault,
  kKernelOops,
  kKernelPanic,
  kOutOfMemory,
  kHung,
  kVmDied,
};
std::string_view CrashKindName(CrashKind kind);  // "workload-signal", "user-fault", ...

struct Crash {
  CrashKind kind;
  std::string source;  // "workload pid 42", "kernel log", "vm event"
  std::string detail;  // the line or status that showed it
  int pid = 0;         // the guest pid concerned, when known (0 otherwise)
};

// A kernel log line's crash, if it shows one. The pid is parsed from the
// usual "comm[PID]" forms when present.
std::optional<Crash> ClassifyKernelLogLine(std::string_view line);
// Every crash in a batch of kernel log lines (agent records or console text).
std::vector<Crash> ClassifyKernelLog(const std::vector<KernelLogLine>& lines);
std::vector<Crash> ClassifyConsoleText(std::string_view console_text);
// A workload's end: a crash unless it exited 0 (or is still running).
std::optional<Crash> ClassifyWorkloadExit(int pid, const GuestExit& exit);
// A VM event: always a crash of some kind.
Crash ClassifyVmEvent(const VmEvent& event);

}  // namespace patchlab::harness

// Crash classification: the one place where the raw signs a machine gives (a
// workload's end, kernel log lines, VM events) become the crash kinds the lab
// records (metrics::CrashKind, the database's vocabulary). The runner's cell
// sequence calls these functions for every crash it records, and the VM tests
// call them on real guests.
//
// Signs and what they become:
//   workload killed by a signal           -> kWorkloadSignal "PROGRAM killed by SIGSEGV"
//   workload exit code != 0               -> kWorkloadExit   "PROGRAM exited 3"
//   workload hung (no progress, ignored SIGTERM) -> kLostHeartbeat
//   kernel log line, first match wins (most specific first):
//     "Kernel panic"                      -> kPanic
//     "Out of memory: Killed process"     -> kOom
//     " segfault at "                     -> kSegfault
//     "general protection fault"          -> kGpf
//     "traps: "                           -> kTrap
//     "Oops"                              -> kOops
//     "BUG: "                             -> kBug
//   VmEventKind::kGuestPanicked           -> kVmPanic
//   VmEventKind::kHeartbeatLost           -> kLostHeartbeat
//   VmEventKind::kVmExited / kAgentGone   -> no crash: the lab's own failure,
//                                            reported by the calls that fail
// print-fatal-signals' "potentially unexpected fatal signal" line has no kind
// of its own: the workload's end by that signal is the crash. (A segfault does
// count twice: workload-signal and segfault, as the kinds are recorded.)
//
// Kernel log lines may carry a console timestamp ("[    1.234567] "): it is
// stripped, so /dev/kmsg records and console.log text read the same.
//
// Thread-safety: pure functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/exit_status.h"
#include "harness/vm/vm_backend.h"
#include "metrics/cell_result.h"

namespace patchlab::harness {

struct Crash {
  metrics::CrashKind kind;
  std::string detail;  // the log line, the signal, the event: shown in the cell's reasons
  int pid = 0;         // the guest pid concerned, when known (0 otherwise)
};

// A kernel log line's crash, if it shows one. The pid is parsed from the usual
// "comm[PID]", "Killed process PID" and "pid: PID" forms when present.
std::optional<Crash> ClassifyKernelLogLine(std::string_view line);
// Every crash in kernel log text: lines separated by '\n' (a trailing '\r' is
// ignored), one Crash per line that shows one, in order.
std::vector<Crash> ClassifyKernelLog(std::string_view text);

// A workload's end, when it is a crash: exit code != 0 or death by a signal.
// nullopt for exit 0 and for a process that has not ended (no signal, not
// exited: a wait that timed out).
std::optional<Crash> ClassifyWorkloadExit(std::string_view program, int pid,
                                          const ExitStatus& exit);
// A workload that stopped making progress, with why (`how`: "completed no
// operation in a 500ms patched window").
Crash WorkloadHang(std::string_view program, std::string_view how);

// A VM event's crash: a guest panic or a lost heartbeat. nullopt for a VM
// process that ended or an agent channel that closed: those are the lab's
// failures, which the calls that fail report as infrastructure errors.
std::optional<Crash> ClassifyVmEvent(const VmEvent& event);
std::vector<Crash> ClassifyVmEvents(const std::vector<VmEvent>& events);

}  // namespace patchlab::harness

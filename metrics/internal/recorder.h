// Whether the process recording a run still runs. A pid alone cannot tell: it
// is recycled, it means nothing on another host, in another pid namespace or
// after a reboot. A run therefore stores its recorder's host, boot id, pid
// namespace, pid and start time, and a recorder counts as alive only when all
// of them still match a live process. Private to metrics/.
//
// Thread-safety: the functions read /proc only; safe from any thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "metrics/cell_result.h"

namespace patchlab::metrics::internal {

// This machine and process namespace as a run records them.
std::string HostName();
std::string BootId();        // empty when /proc does not say
std::string PidNamespace();  // empty when /proc does not say
// Field 22 of /proc/PID/stat (start time, clock ticks after boot), or nullopt
// when `pid` does not exist or has exited (a zombie counts as exited).
std::optional<int64_t> ProcessStartTicks(pid_t pid);

// Fills host, boot_id, pid_ns, pid (this process when 0) and pid_start (of
// `pid`) where `run` leaves them empty.
void FillRecorder(RunInfo& run);

enum class RecorderState {
  kAlive,    // the very process that began or resumed the run still runs here
  kGone,     // it does not: the run was abandoned
  kUnknown,  // recorded on another host or in another pid namespace: cannot tell from here
};

struct RecorderCheck {
  RecorderState state;
  std::string why;  // one sentence naming the pid and host, for notes and errors
};

// Judges the recorder of `run` (host, boot_id, pid_ns, pid, pid_start). Rows
// from before schema 3 (no boot id, no start time) are judged by pid alone.
RecorderCheck CheckRecorder(const RunInfo& run);

}  // namespace patchlab::metrics::internal

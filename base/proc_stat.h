// ProcStat: what patchlab reads from /proc/PID/stat (or a thread's
// /proc/PID/task/TID/stat): the command name, the state letter, the parent and
// the start time. The command
// name (field 2) may hold spaces and parentheses, so fields are counted from
// the last ')'.
//
// Thread-safety: free functions, safe from any thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "base/error.h"

namespace patchlab {

struct ProcStat {
  std::string comm;          // field 2, without its parentheses (at most 15 bytes)
  char state = '?';          // field 3: R, S, D, T, t, Z, X, ...
  pid_t ppid = 0;            // field 4
  uint64_t start_ticks = 0;  // field 22: clock ticks after boot; with the pid, names one process
};

// Parses the text of a stat file. Fails (kParse) naming what is missing.
Result<ProcStat> ParseProcStat(std::string_view text);

// Reads /proc/PID/stat, or /proc/PID/task/TID/stat when `tid` is not 0. Fails
// with kTargetGone when there is no such process or thread, kParse when the
// file is malformed.
Result<ProcStat> ReadProcStat(pid_t pid, pid_t tid = 0);

// Whether the process (or thread) has ended: it is gone, or it is a zombie or
// dead task that its parent has not reaped yet.
bool HasEnded(pid_t pid, pid_t tid = 0);
// Whether a state letter is one of those: Z (zombie), X or x (dead).
inline bool HasEndedState(char state) { return state == 'Z' || state == 'X' || state == 'x'; }

}  // namespace patchlab

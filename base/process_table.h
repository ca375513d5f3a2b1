// ProcessTable: the processes running one program, found through /proc, with
// each one's CPU time. The lab measures targets it did not build this way
// (nginx's master and workers, redis-server and its threads): it adds up their
// CPU time over a window and watches the set of pids for one that ends.
//
// Plain C++ and libc only, so the static guest agent links it as well as the host.
// Thread-safety: free functions, safe from any thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace patchlab {

struct ProcessCpu {
  pid_t pid = 0;
  pid_t ppid = 0;
  std::string comm;          // /proc/PID/comm
  uint64_t start_ticks = 0;  // with the pid, names one process across pid reuse
  uint64_t cpu_ns = 0;       // every thread's CPU time, ended threads included
};

// Every process whose executable (/proc/PID/exe) is `exe`, sorted by pid. The
// CPU time comes from the process's CPU clock (clock_getcpuclockid), in
// nanoseconds rather than /proc's clock ticks, so a short window still
// resolves. A process that ends while being read is left out; zombies are
// left out. Never fails: a /proc it cannot read gives no processes.
std::vector<ProcessCpu> ProcessesRunning(const std::string& exe);

}  // namespace patchlab

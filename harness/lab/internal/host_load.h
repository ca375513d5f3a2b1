// HostLoadMeter: how busy the lab host was over a stretch of time (the cell's
// measurement windows), from /proc/stat and /proc/loadavg. A guest cannot see
// its host's load; the lab records it beside the figures it measured under it.
//
// Thread-safety: one meter per thread; the files it reads are the kernel's.
#pragma once

#include <cstdint>
#include <optional>

#include "metrics/cell_result.h"

namespace patchlab::harness::internal {

class HostLoadMeter {
 public:
  // Starts a stretch: reads the CPU counters and the load average now.
  void Start();
  // Reads them again, while the stretch goes on (adds a load-average sample).
  void Sample();
  // The stretch since Start(): busy and steal percent of the host's CPUs, the
  // mean 1-minute load average over the samples. nullopt when Start() was not
  // called or /proc could not be read (the figures are then simply not recorded).
  std::optional<metrics::HostLoad> Stop();

 private:
  struct CpuTimes {
    uint64_t total = 0;
    uint64_t idle = 0;  // idle + iowait
    uint64_t steal = 0;
  };
  static std::optional<CpuTimes> ReadCpuTimes();
  static std::optional<double> ReadLoad1();

  std::optional<CpuTimes> start_;
  double load_sum_ = 0;
  int load_samples_ = 0;
};

}  // namespace patchlab::harness::internal

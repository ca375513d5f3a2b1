#include "harness/lab/internal/host_load.h"

#include <fstream>
#include <sstream>
#include <string>

namespace patchlab::harness::internal {

std::optional<HostLoadMeter::CpuTimes> HostLoadMeter::ReadCpuTimes() {
  // The first line of /proc/stat: "cpu user nice system idle iowait irq
  // softirq steal guest guest_nice" in clock ticks (proc(5)); guest time is
  // already inside user, so it is not added again.
  std::ifstream in("/proc/stat");
  std::string line;
  if (!std::getline(in, line) || line.rfind("cpu ", 0) != 0) return std::nullopt;
  std::istringstream fields(line.substr(4));
  uint64_t v[8] = {};
  for (uint64_t& x : v) {
    if (!(fields >> x)) return std::nullopt;
  }
  CpuTimes t;
  for (uint64_t x : v) t.total += x;
  t.idle = v[3] + v[4];
  t.steal = v[7];
  return t;
}

std::optional<double> HostLoadMeter::ReadLoad1() {
  std::ifstream in("/proc/loadavg");
  double load = 0;
  if (!(in >> load)) return std::nullopt;
  return load;
}

void HostLoadMeter::Start() {
  start_ = ReadCpuTimes();
  load_sum_ = 0;
  load_samples_ = 0;
  Sample();
}

void HostLoadMeter::Sample() {
  if (auto load = ReadLoad1()) {
    load_sum_ += *load;
    ++load_samples_;
  }
}

std::optional<metrics::HostLoad> HostLoadMeter::Stop() {
  Sample();
  std::optional<CpuTimes> end = ReadCpuTimes();
  if (!start_ || !end || end->total <= start_->total || load_samples_ == 0) return std::nullopt;
  double total = static_cast<double>(end->total - start_->total);
  metrics::HostLoad load;
  load.load1 = load_sum_ / load_samples_;
  load.busy_pct = 100.0 * (1.0 - static_cast<double>(end->idle - start_->idle) / total);
  load.steal_pct = 100.0 * static_cast<double>(end->steal - start_->steal) / total;
  start_.reset();
  return load;
}

}  // namespace patchlab::harness::internal

#include "metrics/internal/recorder.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <vector>

#include "base/file_util.h"
#include "base/proc_stat.h"

namespace patchlab::metrics::internal {

std::string HostName() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "unknown";
  return name;
}

std::string BootId() {
  auto text = ReadFile("/proc/sys/kernel/random/boot_id");
  if (!text) return "";
  std::string id = *text;
  while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
  return id;
}

std::string PidNamespace() {
  std::error_code ec;
  auto target = std::filesystem::read_symlink("/proc/self/ns/pid", ec);
  return ec ? "" : target.string();
}

std::optional<int64_t> ProcessStartTicks(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  auto stat = ReadProcStat(pid);
  if (!stat || HasEndedState(stat->state)) return std::nullopt;  // exited, not reaped
  return static_cast<int64_t>(stat->start_ticks);
}

void FillRecorder(RunInfo& run) {
  if (run.host.empty()) run.host = HostName();
  if (run.boot_id.empty()) run.boot_id = BootId();
  if (run.pid_ns.empty()) run.pid_ns = PidNamespace();
  if (run.pid == 0) run.pid = static_cast<int>(getpid());
  if (run.pid_start == 0) run.pid_start = ProcessStartTicks(run.pid).value_or(0);
}

RecorderCheck CheckRecorder(const RunInfo& run) {
  const std::string who = fmt::format("recording process {} on {}", run.pid, run.host);
  const std::string host = HostName();
  if (run.host != host) {
    return {RecorderState::kUnknown,
            fmt::format("{} cannot be checked from {} (another host)", who, host)};
  }
  if (!run.boot_id.empty()) {
    std::string boot = BootId();
    if (!boot.empty() && boot != run.boot_id) {
      return {RecorderState::kGone,
              fmt::format("{} vanished: the host has rebooted since (boot id {}, now {})", who,
                          run.boot_id, boot)};
    }
  }
  if (!run.pid_ns.empty()) {
    std::string ns = PidNamespace();
    if (!ns.empty() && ns != run.pid_ns) {
      return {RecorderState::kUnknown,
              fmt::format("{} runs in pid namespace {}, not this one ({}): cannot be checked from "
                          "here",
                          who, run.pid_ns, ns)};
    }
  }
  if (run.pid <= 0)
    return {RecorderState::kGone, fmt::format("{} vanished (no pid recorded)", who)};
  std::optional<int64_t> start = ProcessStartTicks(run.pid);
  if (!start) {
    // No /proc entry (or a zombie). Without procfs, fall back on the pid.
    bool procfs = std::filesystem::exists("/proc/self/stat");
    if (!procfs && (::kill(run.pid, 0) == 0 || errno == EPERM)) {
      return {RecorderState::kAlive, fmt::format("{} is alive (by pid only: no /proc)", who)};
    }
    return {RecorderState::kGone, fmt::format("{} vanished", who)};
  }
  if (run.pid_start != 0 && *start != run.pid_start) {
    return {RecorderState::kGone,
            fmt::format("{} vanished: pid {} is now another process (started at tick {}, the "
                        "recorder at tick {})",
                        who, run.pid, *start, run.pid_start)};
  }
  return {RecorderState::kAlive, fmt::format("{} is still running", who)};
}

}  // namespace patchlab::metrics::internal

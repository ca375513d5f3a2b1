#include "patchcore/attach_blocker.h"

#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "base/file_util.h"
#include "base/proc_stat.h"

namespace patchlab::patchcore {
namespace {

// TracerPid from /proc/PID/status; 0 when none (or unreadable).
pid_t TracerOf(pid_t pid) {
  auto status = ReadFile(fmt::format("/proc/{}/status", pid));
  if (!status) return 0;
  const std::string_view key = "TracerPid:";
  size_t at = status->find(key);
  if (at == std::string::npos) return 0;
  return static_cast<pid_t>(std::atoi(status->c_str() + at + key.size()));
}

std::string UserNamespaceOf(const std::string& pid) {
  std::error_code ec;
  return std::filesystem::read_symlink(fmt::format("/proc/{}/ns/user", pid), ec).string();
}

}  // namespace

std::optional<AttachBlocker> KnownAttachBlocker(pid_t pid) {
  if (auto stat = ReadProcStat(pid); stat && HasEndedState(stat->state)) {
    return AttachBlocker{true, "a zombie: it has exited and its parent has not reaped it yet"};
  }
  if (pid_t tracer = TracerOf(pid); tracer != 0 && tracer != ::getpid()) {
    auto stat = ReadProcStat(tracer);
    return AttachBlocker{
        false,
        fmt::format("traced by another tracer, pid {} ({}); a process has one tracer at a time",
                    tracer, stat ? stat->comm : "?")};
  }
  return std::nullopt;
}

std::string AttachBlockerAfter(pid_t pid, int err) {
  if (auto known = KnownAttachBlocker(pid)) return known->reason;
  const std::string self = UserNamespaceOf("self");
  const std::string theirs = UserNamespaceOf(std::to_string(pid));
  if (theirs.empty() || theirs != self) {
    return fmt::format(
        "in another user namespace ({}) where this patcher ({}) has no ptrace rights ({})",
        theirs.empty() ? "unreadable" : theirs, self, std::strerror(err));
  }
  return fmt::format(
      "the kernel's ptrace access check refused ({}): another user's process, or no "
      "CAP_SYS_PTRACE",
      std::strerror(err));
}

}  // namespace patchlab::patchcore

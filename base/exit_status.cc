#include "base/exit_status.h"

#include <fmt/format.h>
#include <string.h>

namespace patchlab {

std::string SignalName(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  if (abbrev == nullptr) return fmt::format("signal {}", sig);
  return fmt::format("SIG{}", abbrev);
}

std::string ExitStatus::ToString() const {
  if (StillRunning()) return "still running";
  std::string out;
  if (timed_out) out = "timed out, ";
  if (exited) return out + fmt::format("exit {}", code);
  out += "killed by " + SignalName(signal);
  if (core_dumped) out += " (core dumped)";
  return out;
}

}  // namespace patchlab

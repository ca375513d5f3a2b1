#include "harness/vm/crash_classifier.h"

#include <array>
#include <cctype>
#include <charconv>

namespace patchlab::harness {
namespace {

using metrics::CrashKind;

struct Pattern {
  std::string_view needle;
  CrashKind kind;
};

// Ordered: the first match wins. A panic or an OOM kill names the line's
// cause even when the line also mentions a fault; "traps: x general protection
// fault" is a gpf, not a plain trap.
constexpr std::array kPatterns = {
    Pattern{"Kernel panic", CrashKind::kPanic},
    Pattern{"Out of memory: Killed process", CrashKind::kOom},
    Pattern{" segfault at ", CrashKind::kSegfault},
    Pattern{"general protection fault", CrashKind::kGpf},
    Pattern{"traps: ", CrashKind::kTrap},
    Pattern{"Oops", CrashKind::kOops},
    Pattern{"BUG: ", CrashKind::kBug},
};

// Strips a console timestamp "[    1.234567] " if the line has one.
std::string_view StripTimestamp(std::string_view line) {
  size_t i = 0;
  while (i < line.size() && line[i] == ' ') ++i;
  if (i < line.size() && line[i] == '[') {
    size_t close = line.find(']', i);
    if (close != std::string_view::npos && close < 20) {
      line.remove_prefix(close + 1);
      while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    }
  }
  return line;
}

// Trailing '\r' (console text) and spaces are not part of what a line says.
std::string_view TrimEnd(std::string_view line) {
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
  return line;
}

// The decimal number at the start of `text`; 0 when there is none. Digits
// only: a pid has no sign, and the guest writes this text ("Killed process -2"
// read as -2 before).
int LeadingNumber(std::string_view text) {
  int value = 0;
  if (text.empty() || !std::isdigit(static_cast<unsigned char>(text.front()))) return 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

// The pid in "Killed process 1234", "pid: 1234" or "comm[1234]" (segfault, traps).
int ParsePid(std::string_view text) {
  for (std::string_view marker : {std::string_view("Killed process "), std::string_view("pid: ")}) {
    if (size_t at = text.find(marker); at != std::string_view::npos)
      return LeadingNumber(text.substr(at + marker.size()));
  }
  // "comm[PID]" anywhere: the first '[' followed by digits only and ']'.
  for (size_t open = text.find('['); open != std::string_view::npos;
       open = text.find('[', open + 1)) {
    size_t close = text.find(']', open);
    if (close == std::string_view::npos || close == open + 1) continue;
    std::string_view digits = text.substr(open + 1, close - open - 1);
    bool all_digits = true;
    for (char c : digits) all_digits = all_digits && std::isdigit(static_cast<unsigned char>(c));
    if (all_digits) return LeadingNumber(digits);
  }
  return 0;
}

}  // namespace

std::optional<Crash> ClassifyKernelLogLine(std::string_view line) {
  std::string_view text = TrimEnd(StripTimestamp(line));
  for (const Pattern& p : kPatterns) {
    if (text.find(p.needle) == std::string_view::npos) continue;
    return Crash{p.kind, std::string(text), ParsePid(text)};
  }
  return std::nullopt;
}

std::vector<Crash> ClassifyKernelLog(std::string_view text) {
  std::vector<Crash> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    std::string_view line =
        text.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start);
    if (auto crash = ClassifyKernelLogLine(line)) out.push_back(std::move(*crash));
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  return out;
}

std::optional<Crash> ClassifyWorkloadExit(std::string_view program, int pid,
                                          const ExitStatus& exit) {
  if (exit.exited) {
    if (exit.code == 0) return std::nullopt;
    return Crash{CrashKind::kWorkloadExit, fmt::format("{} exited {}", program, exit.code), pid};
  }
  if (exit.StillRunning()) return std::nullopt;
  return Crash{CrashKind::kWorkloadSignal,
               fmt::format("{} killed by {}", program, SignalName(exit.signal)), pid};
}

Crash WorkloadHang(std::string_view program, std::string_view how) {
  return Crash{CrashKind::kLostHeartbeat, fmt::format("{} {} (hung)", program, how)};
}

std::optional<Crash> ClassifyVmEvent(const VmEvent& event) {
  switch (event.kind) {
    case VmEventKind::kGuestPanicked:
      return Crash{CrashKind::kVmPanic, event.detail};
    case VmEventKind::kHeartbeatLost:
      return Crash{CrashKind::kLostHeartbeat, event.detail};
    case VmEventKind::kVmExited:
    case VmEventKind::kAgentGone:
      return std::nullopt;
  }
  std::abort();
}

std::vector<Crash> ClassifyVmEvents(const std::vector<VmEvent>& events) {
  std::vector<Crash> out;
  for (const VmEvent& e : events) {
    if (auto crash = ClassifyVmEvent(e)) out.push_back(std::move(*crash));
  }
  return out;
}

}  // namespace patchlab::harness

#include "harness/vm/crash_classifier.h"

#include <array>
#include <cctype>
#include <cstdlib>

#include "base/subprocess.h"

namespace patchlab::harness {
namespace {

struct Pattern {
  std::string_view needle;
  CrashKind kind;
};

// Ordered: the first match wins, so the most specific patterns come first.
constexpr std::array kPatterns = {
    Pattern{"Kernel panic", CrashKind::kKernelPanic},
    Pattern{"Out of memory: Killed process", CrashKind::kOutOfMemory},
    Pattern{"Out of memory and no killable processes", CrashKind::kOutOfMemory},
    Pattern{"Oops:", CrashKind::kKernelOops},
    Pattern{"BUG:", CrashKind::kKernelOops},
    Pattern{"segfault at", CrashKind::kUserFault},
    Pattern{"traps:", CrashKind::kUserFault},
    Pattern{"general protection fault", CrashKind::kUserFault},
    Pattern{"potentially unexpected fatal signal", CrashKind::kUserFault},
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

// The pid in "comm[1234]: ..." (segfault, traps) or "Killed process 1234" or "pid: 1234".
int ParsePid(std::string_view text) {
  if (size_t at = text.find("Killed process "); at != std::string_view::npos) {
    return std::atoi(std::string(text.substr(at + 15, 12)).c_str());
  }
  if (size_t at = text.find("pid: "); at != std::string_view::npos) {
    return std::atoi(std::string(text.substr(at + 5, 12)).c_str());
  }
  // "comm[PID]" anywhere: the first '[' followed by digits and ']'.
  for (size_t open = text.find('['); open != std::string_view::npos;
       open = text.find('[', open + 1)) {
    size_t close = text.find(']', open);
    if (close == std::string_view::npos || close == open + 1) continue;
    std::string digits(text.substr(open + 1, close - open - 1));
    bool all_digits = true;
    for (char c : digits) all_digits = all_digits && std::isdigit(static_cast<unsigned char>(c));
    if (all_digits) return std::atoi(digits.c_str());
  }
  return 0;
}

}  // namespace

std::string_view CrashKindName(CrashKind kind) {
  switch (kind) {
    case CrashKind::kWorkloadSignal:
      return "workload-signal";
    case CrashKind::kWorkloadError:
      return "workload-error";
    case CrashKind::kUserFault:
      return "user-fault";
    case CrashKind::kKernelOops:
      return "kernel-oops";
    case CrashKind::kKernelPanic:
      return "kernel-panic";
    case CrashKind::kOutOfMemory:
      return "out-of-memory";
    case CrashKind::kHung:
      return "hung";
    case CrashKind::kVmDied:
      return "vm-died";
  }
  std::abort();
}

std::optional<Crash> ClassifyKernelLogLine(std::string_view line) {
  std::string_view text = StripTimestamp(line);
  for (const Pattern& p : kPatterns) {
    if (text.find(p.needle) == std::string_view::npos) continue;
    Crash crash{p.kind, "kernel log", std::string(text), 0};
    crash.pid = ParsePid(text);
    return crash;
  }
  return std::nullopt;
}

std::vector<Crash> ClassifyKernelLog(const std::vector<KernelLogLine>& lines) {
  std::vector<Crash> out;
  for (const KernelLogLine& l : lines) {
    if (auto c = ClassifyKernelLogLine(l.text)) out.push_back(std::move(*c));
  }
  return out;
}

std::vector<Crash> ClassifyConsoleText(std::string_view console_text) {
  std::vector<Crash> out;
  size_t start = 0;
  while (start < console_text.size()) {
    size_t nl = console_text.find('\n', start);
    std::string_view line = console_text.substr(
        start, nl == std::string_view::npos ? std::string_view::npos : nl - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (auto c = ClassifyKernelLogLine(line)) {
      c->source = "console log";
      out.push_back(std::move(*c));
    }
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  return out;
}

std::optional<Crash> ClassifyWorkloadExit(int pid, const GuestExit& exit) {
  std::string source = fmt::format("workload pid {}", pid);
  if (exit.exited) {
    if (exit.code == 0) return std::nullopt;
    return Crash{CrashKind::kWorkloadError, source, exit.ToString(), pid};
  }
  if (exit.signal == 0) return std::nullopt;  // still running
  return Crash{CrashKind::kWorkloadSignal, source, exit.ToString(), pid};
}

Crash ClassifyVmEvent(const VmEvent& event) {
  CrashKind kind = CrashKind::kVmDied;
  switch (event.kind) {
    case VmEventKind::kGuestPanicked:
      kind = CrashKind::kKernelPanic;
      break;
    case VmEventKind::kHeartbeatLost:
      kind = CrashKind::kHung;
      break;
    case VmEventKind::kVmExited:
    case VmEventKind::kAgentGone:
      kind = CrashKind::kVmDied;
      break;
  }
  return Crash{kind, "vm event", fmt::format("{}: {}", VmEventKindName(event.kind), event.detail),
               0};
}

}  // namespace patchlab::harness

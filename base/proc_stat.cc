#include "base/proc_stat.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <string>

#include "base/file_util.h"

namespace patchlab {

Result<ProcStat> ParseProcStat(std::string_view text) {
  const size_t close = text.rfind(')');
  if (close == std::string_view::npos) return Fail(ErrorCode::kParse, "no command name");
  ProcStat s;
  if (const size_t open = text.find('('); open != std::string_view::npos && open < close) {
    s.comm = std::string(text.substr(open + 1, close - open - 1));
  }
  // Fields 3 onwards, one space apart.
  std::string_view rest = text.substr(close + 1);
  int field = 2;
  while (field < 22) {
    const size_t at = rest.find_first_not_of(' ');
    if (at == std::string_view::npos) break;
    rest.remove_prefix(at);
    const size_t end = std::min(rest.find(' '), rest.size());
    const std::string_view value = rest.substr(0, end);
    ++field;
    if (field == 3) s.state = value.front();
    if (field == 4) {
      auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), s.ppid);
      if (ec != std::errc()) return Fail(ErrorCode::kParse, "parent pid '{}' is no number", value);
    }
    if (field == 22) {
      auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), s.start_ticks);
      if (ec != std::errc()) return Fail(ErrorCode::kParse, "start time '{}' is no number", value);
    }
    rest.remove_prefix(end);
  }
  if (field < 22) return Fail(ErrorCode::kParse, "{} fields, 22 expected", field);
  return s;
}

Result<ProcStat> ReadProcStat(pid_t pid, pid_t tid) {
  const std::string path =
      tid == 0 ? fmt::format("/proc/{}/stat", pid) : fmt::format("/proc/{}/task/{}/stat", pid, tid);
  auto text = ReadFile(path);
  if (!text) {
    return tid == 0 ? Fail(ErrorCode::kTargetGone, "pid {} is gone", pid)
                    : Fail(ErrorCode::kTargetGone, "pid {} thread {} is gone", pid, tid);
  }
  auto s = ParseProcStat(*text);
  if (!s) return std::unexpected(std::move(s.error()).AddContext(path));
  return s;
}

bool HasEnded(pid_t pid, pid_t tid) {
  auto s = ReadProcStat(pid, tid);
  // A file that cannot be parsed belongs to a live process: only the kernel
  // writes it, so it is whole.
  if (!s) return s.error().code() == ErrorCode::kTargetGone;
  return HasEndedState(s->state);
}

}  // namespace patchlab

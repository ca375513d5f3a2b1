#include "tools/hotpatch/cli_common.h"

#include <charconv>
#include <cstdio>

namespace patchlab::hotpatch {

int ExitCodeFor(const Error& e) {
  switch (e.code()) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kNotFound:
    case ErrorCode::kParse:
      return kExitUsage;
    case ErrorCode::kRefused:
    case ErrorCode::kUnsupported:
    case ErrorCode::kTimeout:
      return kExitRefused;
    case ErrorCode::kTargetGone:
      return kExitGone;
    default:
      return kExitRolledBack;
  }
}

int Report(const Error& e, const char* command) {
  int code = ExitCodeFor(e);
  const char* what = code == kExitRefused ? "refused"
                     : code == kExitGone  ? "target gone"
                     : code == kExitUsage ? "error"
                                          : "failed";
  std::fprintf(stderr, "hotpatch %s: %s: %s\n", command, what, e.ToString().c_str());
  return code;
}

std::string Hex(patchcore::RemotePtr p) { return fmt::format("{:#x}", p.addr()); }

Result<std::chrono::milliseconds> ParseDuration(std::string_view text) {
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  const std::string_view unit(end, static_cast<size_t>(text.data() + text.size() - end));
  using std::chrono::milliseconds;
  if (ec == std::errc() && end != text.data()) {
    if (unit == "ms") return milliseconds(n);
    if (unit.empty() || unit == "s") return milliseconds(n * 1000);
    if (unit == "m") return milliseconds(n * 60 * 1000);
    if (unit == "h") return milliseconds(n * 3600 * 1000);
  }
  return Fail(ErrorCode::kInvalidArgument,
              "'{}' is not a duration (a number with ms, s, m or h; e.g. 30s)", text);
}

}  // namespace patchlab::hotpatch

// What every hotpatch command shares: the exit codes, reporting an error,
// and the small formats of the command line (addresses, durations).
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "base/error.h"
#include "patchcore/remote_ptr.h"

namespace patchlab::hotpatch {

// Exit codes, everywhere: 0 done; 2 usage error or unreadable input; 3
// refused before anything changed; 4 failed part-way and fully rolled back
// (verify: a mismatch); 5 the target vanished.
inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitRefused = 3;
inline constexpr int kExitRolledBack = 4;
inline constexpr int kExitGone = 5;

int ExitCodeFor(const Error& e);
// Prints "hotpatch COMMAND: refused|failed|...: why" to stderr; returns the exit code.
int Report(const Error& e, const char* command);
std::string Hex(patchcore::RemotePtr p);
// "250ms", "30s", "5m", "1h"; a bare number is seconds. kInvalidArgument otherwise.
Result<std::chrono::milliseconds> ParseDuration(std::string_view text);

}  // namespace patchlab::hotpatch

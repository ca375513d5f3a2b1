// Reading work and latency out of a load generator's output, by the regexes a
// scenario declares (workload.load.work, workload.load.latency): the lab does
// not know ab's, wrk's or redis-benchmark's formats, the scenario says them.
//
// Patterns are ECMAScript (std::regex), validated when the scenario is read.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"

namespace patchlab::harness::internal {

// The work in `output`: every match of `pattern` adds its first capture group
// (a number; a fraction is rounded down) or 1 when the regex has no group.
// nullopt when nothing matched: a generator that printed nothing the scenario
// recognises did no work the lab can count. kParse when a group is not a number.
Result<std::optional<uint64_t>> CountWork(const std::string& pattern, std::string_view output);

// The first match's first capture group as a number (a latency percentile in
// ms); nullopt when nothing matched. kParse when the group is not a number or
// the regex has no group.
Result<std::optional<double>> FirstNumber(const std::string& pattern, std::string_view output);

}  // namespace patchlab::harness::internal

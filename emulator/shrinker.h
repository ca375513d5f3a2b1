// Shrinking a failing input to a small one that fails the same way: delta
// debugging on buffer bytes (drop halves, quarters, ... single bytes, keeping
// a length argument in step with its buffer), each remaining byte toward 0
// (or toward '0'/'a'/'A'/' ' when 0 no longer fails), integers toward 0 by
// halving and stepping, and the trailing-guard placement over the leading one.
// Deterministic: the same input and predicate give the same result.
//
// Thread-safety: as the predicate.
#pragma once

#include <functional>

#include "emulator/input.h"
#include "emulator/signature.h"

namespace patchlab::emulator {

// True when `candidate` still shows the divergence being shrunk.
using StillFails = std::function<bool(const Input& candidate)>;

// The smallest failing input found within `max_evaluations` predicate calls.
// REQUIRES: still_fails(start).
Input Shrink(const Signature& sig, Input start, const StillFails& still_fails, int max_evaluations);

}  // namespace patchlab::emulator

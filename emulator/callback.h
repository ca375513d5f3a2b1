// Generated callbacks: what a function-pointer parameter points to when the
// check does not pass a function of the checked file (`fn = NAME`). Each is
// a stub with a fixed, recorded behaviour, chosen per input like any other
// argument value and shown in counterexamples:
//   0  returns 0          1  returns 1          2  returns -1
//   3  compares: the first bytes its first two pointer arguments point at
//      (unsigned), or its first two integer arguments; -1, 0 or 1
//   4  the same, descending
// A callback returning void does nothing. Calls to callbacks are not
// compared (a new sort may compare in another order); what the function
// makes of their answers is.
//
// Thread-safety: constants and a pure function.
#pragma once

#include <string_view>

namespace patchlab::emulator {

inline constexpr int kCallbackBehaviours = 5;

// "returns 0", "compares ascending", ...
std::string_view CallbackBehaviourName(int behaviour);

}  // namespace patchlab::emulator

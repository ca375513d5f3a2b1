// A side-by-side Capstone listing of the old and the new function, for the
// report (--listing): address, mnemonic and operands of each, in two columns.
// A function without a symbol size is listed up to its first `ret` (at most
// 4 KiB).
//
// Thread-safety: safe to call concurrently.
#pragma once

#include <string>

#include "emulator/pair_runner.h"

namespace patchlab::emulator {

std::string SideBySideListing(const LoadedFunction& old_fn, const LoadedFunction& new_fn);

}  // namespace patchlab::emulator

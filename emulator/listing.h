// A side-by-side Capstone listing of the old and the new function, for the
// report (--listing): address, mnemonic and operands of each, in two columns.
// A function without a symbol size is listed up to its first `ret` (at most
// 4 KiB).
//
// Thread-safety: safe to call concurrently.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "emulator/pair_runner.h"

namespace patchlab::emulator {

std::string SideBySideListing(const LoadedFunction& old_fn, const LoadedFunction& new_fn);

// Byte strings the function's code compares against or points at: printable
// immediates of 1-8 bytes (an inlined memcmp with "GET " is `cmp dword ptr
// [rdi], 0x20544547`) and NUL-terminated printable strings of 1-64 bytes at
// RIP-relative addresses. For the input generator's dictionary. Sorted,
// without duplicates.
std::vector<std::vector<uint8_t>> ExtractTokens(const LoadedFunction& fn);

}  // namespace patchlab::emulator

// EntryPage: the guest code every run starts at. It puts the CPU into the same
// state before every run (all general registers, flags, SSE registers and
// MXCSR, x87 control/status/tags),
// loads the argument registers and the stack pointer from the page's data
// and jumps to the function. The sentinel return address is on this page too.
//
// Doing this in guest code costs one translated block per run; resetting the
// same state from the host (uc_context_restore of 5.5 KB, or uc_reg_write of
// ~35 registers) costs 170-550 ns a run in Unicorn 2.0.1, more than a short
// function's whole run. The page is mapped read and execute: the checked
// function cannot change it. The host writes the per-run data (arguments,
// stack pointer, entry) through its host pointer; the code bytes never change,
// so no translated block goes stale.
//
// Thread-safety: plain functions.
#pragma once

#include <cstdint>

namespace patchlab::emulator {

// Where runs start (the sentinel `hlt` is at offset 0), and the offsets of the
// per-run data in the page: six argument registers (rdi, rsi, rdx, rcx, r8,
// r9), then rsp, then the function's address.
inline constexpr uint64_t kEntryCodeOffset = 0x10;
inline constexpr uint64_t kEntryArgsOffset = 0x618;
inline constexpr uint64_t kEntryRspOffset = 0x648;
inline constexpr uint64_t kEntryTargetOffset = 0x650;
// The entry that also loads XMM0-7 (16 bytes each, from kEntryXmmArgsOffset)
// and AL (from kEntryAlOffset): for calls with SSE arguments or variadic
// calls. The plain one clears XMM0-15 and AL.
inline constexpr uint64_t kEntrySseCodeOffset = 0x100;
inline constexpr uint64_t kEntryXmmArgsOffset = 0x680;
inline constexpr uint64_t kEntryAlOffset = 0x700;

// Fills `page` (one page) with the code and the constant data.
void WriteEntryPage(uint8_t* page);

// Whether the translated block at `addr` is the entry code (not counted as
// part of the function's run).
bool IsEntryCode(uint64_t addr);

}  // namespace patchlab::emulator

// Where the sandbox puts things in a guest's address space. Old and new side
// use the same layout, so that pointers into buffers, the heap and the target
// image mean the same thing on both sides and can be compared as numbers.
#pragma once

#include <cstdint>

namespace patchlab::emulator {

inline constexpr uint64_t kPageSize = 0x1000;

// ET_DYN images (PIE targets, shared objects) are loaded at these bases;
// ET_EXEC images at their own addresses.
inline constexpr uint64_t kTargetBase = 0x555555554000;
inline constexpr uint64_t kPatchBase = 0x7f0000000000;
// Shared libraries the images need (other than glibc's, whose functions are
// stubbed): the k-th at kLibraryBase + k * kLibraryStride.
inline constexpr uint64_t kLibraryBase = 0x7e0000000000;
inline constexpr uint64_t kLibraryStride = 0x10000000;

// QEMU's TLB is direct-mapped: a page's entry is its page number modulo the
// table's size (at least 64 entries; Unicorn 2.0.1 resizes it with use). Two
// pages that every run touches and that share an index evict each other, and
// each access after the other page's goes through a helper call (a victim-TLB
// swap and a Unicorn region lookup). So the pages below that runs use each
// have their own index modulo 64 (checked at the end of this file): the
// entry page 42, the top stack page 63 (the frames below it 62, 61, ...),
// the TLS page 48, the heap from 32, the stubs from 0, the arguments 8, 10,
// ..., 18. A page of the loaded images may still share one; that costs what
// it costs in any emulator, the bare loop of the benchmark included.
inline constexpr uint64_t TlbIndex(uint64_t addr) { return (addr / kPageSize) % 64; }

// Argument buffers: parameter i has one mapped page, ArgPage(i), with unmapped
// guard pages on both sides.
inline constexpr uint64_t kArgBase = 0x7a0000000000;
inline constexpr uint64_t kArgStride = 0x100000;
inline constexpr uint64_t kArgBytes = kPageSize;
inline constexpr uint64_t ArgPage(uint64_t i) {
  return kArgBase + i * kArgStride + (8 + 2 * i) * kPageSize;
}

// Where a hidden return pointer points (a record returned in memory): its
// own page, with unmapped neighbours.
inline constexpr uint64_t kReturnBuffer = kArgBase + 3 * kPageSize;

inline constexpr uint64_t kHeapBase = 0x7b0000020000;
inline constexpr uint64_t kHeapBytes = 0x100000;

// fs:[0x28] is the stack protector's canary.
inline constexpr uint64_t kTlsBase = 0x7c0000030000;
inline constexpr uint64_t kTlsBytes = kPageSize;
inline constexpr uint64_t kStackCanary = 0x2f8a5c3e17d04b00;
// The loaded modules' static TLS blocks lie below the thread pointer (fs),
// within this many bytes.
inline constexpr uint64_t kStaticTlsBytes = 0x10000;

// Data that glibc's unloaded libraries (ld.so) define and loaded images
// refer to (image_linker.h): zero-filled storage, laid out in order of need.
inline constexpr uint64_t kExternBase = 0x7b800001b000;
inline constexpr uint64_t kExternBytes = 0x10000;

// Library stubs: one 16-byte slot each; slot 0 is not used.
inline constexpr uint64_t kStubBase = 0x7d0000000000;
inline constexpr uint64_t kStubSlotBytes = 16;
inline constexpr uint64_t kStubBytes = 0x10000;
// The entry code every run starts at (entry_page.h), and at that page's start
// the sentinel return address where every run ends: one page, so one TLB
// entry. The sentinel must start its page with the page before it unmapped:
// after every run Unicorn invalidates translated code at [exit - 1, exit),
// which costs microseconds when that byte is mapped (a bare loop ran two to
// four times slower with its exit at the end of a mapped page).
inline constexpr uint64_t kEntryBase = kStubBase - 22 * kPageSize;
inline constexpr uint64_t kSentinel = kEntryBase;

inline constexpr uint64_t kStackBytes = 0x40000;
inline constexpr uint64_t kStackTop = 0x7ff000000000;
// Where rsp points at a function's entry, at the sentinel return address:
// rsp + 8 is 16-byte aligned, as after a call.
inline constexpr uint64_t kInitialRsp = kStackTop - 0x100 - 8;
// Only this much below the initial stack pointer is cleared between runs:
// deeper frames are rare and clearing everything would dominate a run's cost.
inline constexpr uint64_t kStackResetBytes = 0x1000;

// Fill of argument pages around a buffer and of fresh heap chunks.
inline constexpr uint8_t kFillByte = 0xa5;

// No two of the pages every run may touch share a TLB index (see TlbIndex).
static_assert([] {
  const uint64_t pages[] = {kEntryBase, kInitialRsp, kTlsBase,   kHeapBase,  kStubBase, ArgPage(0),
                            ArgPage(1), ArgPage(2),  ArgPage(3), ArgPage(4), ArgPage(5)};
  for (uint64_t a : pages) {
    for (uint64_t b : pages) {
      if (a != b && TlbIndex(a) == TlbIndex(b)) return false;
    }
  }
  return true;
}());

}  // namespace patchlab::emulator

// Scans of sandbox memory between runs, vectorised: they run twice per
// compared pair, next to runs of a few hundred nanoseconds.
#pragma once

#include <cstddef>
#include <cstdint>

namespace patchlab::emulator {

// The offset of the first 64-byte block of [p, p+n) holding a nonzero byte,
// or n when all are zero. REQUIRES: p 64-byte aligned, n a multiple of 64.
size_t FirstNonZeroBlock(const uint8_t* p, size_t n);

struct PagePairScan {
  bool equal = false;  // a and b hold the same n bytes
  // a holds `fill` everywhere outside [placed_begin, placed_end)
  bool a_clean = false;
};

// One pass over two pages: whether they are equal, and whether the first
// still holds `fill` outside its placed bytes. REQUIRES: a and b 32-byte
// aligned, n a multiple of 32, placed_begin <= placed_end <= n.
PagePairScan ScanPagePair(const uint8_t* a, const uint8_t* b, size_t n, uint8_t fill,
                          size_t placed_begin, size_t placed_end);

// The SSE2 forms the two above fall back to on CPUs without AVX2 (for tests;
// ScanPagePairSse2 takes the placed range already widened to 32-byte blocks).
size_t FirstNonZeroBlockSse2(const uint8_t* p, size_t n);
PagePairScan ScanPagePairSse2(const uint8_t* a, const uint8_t* b, size_t n, uint8_t fill, size_t lo,
                              size_t hi);

}  // namespace patchlab::emulator

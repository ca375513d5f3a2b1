// The vectorised scans behind a sandbox reset and the page comparison, in
// both forms (AVX2 where the CPU has it, SSE2 on any x86-64), against a byte
// loop: dirty bytes at every offset around the placed range and block edges.
#include "emulator/internal/byte_scan.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

namespace patchlab::emulator {
namespace {

constexpr size_t kBytes = 4096;
constexpr uint8_t kFill = 0xa5;

struct Pages {
  Pages() {
    a = static_cast<uint8_t*>(std::aligned_alloc(64, kBytes));
    b = static_cast<uint8_t*>(std::aligned_alloc(64, kBytes));
  }
  ~Pages() {
    std::free(a);
    std::free(b);
  }
  uint8_t* a;
  uint8_t* b;
};

PagePairScan Reference(const uint8_t* a, const uint8_t* b, size_t begin, size_t end) {
  PagePairScan r{std::memcmp(a, b, kBytes) == 0, true};
  for (size_t i = 0; i < kBytes; ++i) {
    if ((i < begin || i >= end) && a[i] != kFill) r.a_clean = false;
  }
  return r;
}

TEST(ByteScan, FirstNonZeroBlockFindsTheLowestDirtyByte) {
  Pages p;
  // Block edges, and the edges of the 256-byte chunks the AVX2 form tests at once.
  for (size_t dirty : {size_t{0}, size_t{63}, size_t{64}, size_t{255}, size_t{256}, size_t{300},
                       size_t{2047}, kBytes - 257, kBytes - 1}) {
    SCOPED_TRACE(dirty);
    std::memset(p.a, 0, kBytes);
    EXPECT_EQ(FirstNonZeroBlock(p.a, kBytes), kBytes);
    EXPECT_EQ(FirstNonZeroBlockSse2(p.a, kBytes), kBytes);
    p.a[dirty] = 1;
    p.a[kBytes - 1] = 1;  // a higher one must not hide it
    EXPECT_EQ(FirstNonZeroBlock(p.a, kBytes), dirty & ~size_t{63});
    EXPECT_EQ(FirstNonZeroBlockSse2(p.a, kBytes), dirty & ~size_t{63});
  }
}

TEST(ByteScan, FirstNonZeroBlockScansALengthThatIsNotWholeChunks) {
  Pages p;
  constexpr size_t kShort = kBytes - 128;  // 62 blocks: the last two past the last whole chunk
  for (size_t dirty : {kShort - 129, kShort - 64, kShort - 1}) {
    SCOPED_TRACE(dirty);
    std::memset(p.a, 0, kBytes);
    p.a[kBytes - 1] = 1;  // past the length: must not be seen
    EXPECT_EQ(FirstNonZeroBlock(p.a, kShort), kShort);
    p.a[dirty] = 1;
    EXPECT_EQ(FirstNonZeroBlock(p.a, kShort), dirty & ~size_t{63});
    EXPECT_EQ(FirstNonZeroBlockSse2(p.a, kShort), dirty & ~size_t{63});
  }
}

TEST(ByteScan, PagePairScanMatchesAByteLoop) {
  Pages p;
  const size_t ranges[][2] = {{0, 0}, {0, 32}, {4064, 4096}, {1000, 1001}, {33, 95}, {4050, 4096}};
  for (const auto& range : ranges) {
    const size_t begin = range[0], end = range[1];
    // Offsets next to the placed range and to 32-byte block edges, and one in it.
    for (long probe : {-1L, 0L, 1L, 31L, 32L}) {
      for (size_t base : {begin, end, (begin + end) / 2}) {
        const long at = static_cast<long>(base) + probe - 1;
        if (at < 0 || at >= static_cast<long>(kBytes)) continue;
        for (bool in_both : {false, true}) {
          SCOPED_TRACE(::testing::Message() << "placed [" << begin << ", " << end << ") dirty at "
                                            << at << (in_both ? " on both sides" : " on one"));
          std::memset(p.a, kFill, kBytes);
          std::memset(p.b, kFill, kBytes);
          for (size_t i = begin; i < end; ++i) p.a[i] = p.b[i] = static_cast<uint8_t>(i);
          p.a[at] ^= 0x5a;
          if (in_both) p.b[at] ^= 0x5a;
          PagePairScan want = Reference(p.a, p.b, begin, end);
          PagePairScan got = ScanPagePair(p.a, p.b, kBytes, kFill, begin, end);
          EXPECT_EQ(got.equal, want.equal);
          EXPECT_EQ(got.a_clean, want.a_clean);
          // The SSE2 form sees whole 32-byte blocks; ScanPagePair checks the
          // partial ones byte by byte, so compare it where the blocks are whole.
          if (begin % 32 == 0 && end % 32 == 0) {
            PagePairScan sse = ScanPagePairSse2(p.a, p.b, kBytes, kFill, begin, end);
            EXPECT_EQ(sse.equal, want.equal);
            EXPECT_EQ(sse.a_clean, want.a_clean);
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace patchlab::emulator

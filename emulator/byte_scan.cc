#include "emulator/internal/byte_scan.h"

#include <immintrin.h>

#include <cassert>

namespace patchlab::emulator {
namespace {

// AVX2 where the CPU has it (two 32-byte loads a cycle), else SSE2, which
// every x86-64 CPU has.
const bool kHaveAvx2 = __builtin_cpu_supports("avx2");

__attribute__((target("avx2"))) bool NonZero64(const uint8_t* p) {
  __m256i x = _mm256_or_si256(_mm256_load_si256(reinterpret_cast<const __m256i*>(p)),
                              _mm256_load_si256(reinterpret_cast<const __m256i*>(p + 32)));
  return !_mm256_testz_si256(x, x);
}

// 256 bytes a test (one branch per eight loads), then the block within them.
__attribute__((target("avx2"))) size_t FirstNonZeroBlockAvx2(const uint8_t* p, size_t n) {
  size_t off = 0;
  for (; off + 256 <= n; off += 256) {
    const auto* q = reinterpret_cast<const __m256i*>(p + off);
    __m256i x = _mm256_or_si256(
        _mm256_or_si256(_mm256_or_si256(_mm256_load_si256(q), _mm256_load_si256(q + 1)),
                        _mm256_or_si256(_mm256_load_si256(q + 2), _mm256_load_si256(q + 3))),
        _mm256_or_si256(_mm256_or_si256(_mm256_load_si256(q + 4), _mm256_load_si256(q + 5)),
                        _mm256_or_si256(_mm256_load_si256(q + 6), _mm256_load_si256(q + 7))));
    if (!_mm256_testz_si256(x, x)) break;
  }
  for (; off < n; off += 64) {
    if (NonZero64(p + off)) return off;
  }
  return n;
}

}  // namespace

size_t FirstNonZeroBlockSse2(const uint8_t* p, size_t n) {
  const __m128i zero = _mm_setzero_si128();
  for (size_t off = 0; off < n; off += 64) {
    const auto* q = reinterpret_cast<const __m128i*>(p + off);
    __m128i x = _mm_or_si128(_mm_or_si128(_mm_load_si128(q), _mm_load_si128(q + 1)),
                             _mm_or_si128(_mm_load_si128(q + 2), _mm_load_si128(q + 3)));
    if (_mm_movemask_epi8(_mm_cmpeq_epi8(x, zero)) != 0xffff) return off;
  }
  return n;
}

namespace {

// OR of a ^ b over [begin, end) into *diff and of a ^ fill over it into
// *dirty when `check_fill`. 32-byte steps; begin and end multiples of 32.
__attribute__((target("avx2"))) void ScanRangeAvx2(const uint8_t* a, const uint8_t* b, size_t begin,
                                                   size_t end, __m256i fill, bool check_fill,
                                                   __m256i* diff, __m256i* dirty) {
  __m256i d = *diff, f = *dirty;
  if (check_fill) {
    for (size_t off = begin; off < end; off += 32) {
      __m256i x = _mm256_load_si256(reinterpret_cast<const __m256i*>(a + off));
      __m256i y = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + off));
      d = _mm256_or_si256(d, _mm256_xor_si256(x, y));
      f = _mm256_or_si256(f, _mm256_xor_si256(x, fill));
    }
  } else {
    for (size_t off = begin; off < end; off += 32) {
      __m256i x = _mm256_load_si256(reinterpret_cast<const __m256i*>(a + off));
      __m256i y = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + off));
      d = _mm256_or_si256(d, _mm256_xor_si256(x, y));
    }
  }
  *diff = d;
  *dirty = f;
}

__attribute__((target("avx2"))) PagePairScan ScanPagePairAvx2(const uint8_t* a, const uint8_t* b,
                                                              size_t n, uint8_t fill, size_t lo,
                                                              size_t hi) {
  const __m256i f = _mm256_set1_epi8(static_cast<char>(fill));
  __m256i diff = _mm256_setzero_si256(), dirty = _mm256_setzero_si256();
  ScanRangeAvx2(a, b, 0, lo, f, true, &diff, &dirty);
  ScanRangeAvx2(a, b, lo, hi, f, false, &diff, &dirty);
  ScanRangeAvx2(a, b, hi, n, f, true, &diff, &dirty);
  return {static_cast<bool>(_mm256_testz_si256(diff, diff)),
          static_cast<bool>(_mm256_testz_si256(dirty, dirty))};
}

}  // namespace

PagePairScan ScanPagePairSse2(const uint8_t* a, const uint8_t* b, size_t n, uint8_t fill, size_t lo,
                              size_t hi) {
  const __m128i f = _mm_set1_epi8(static_cast<char>(fill));
  __m128i diff = _mm_setzero_si128(), dirty = _mm_setzero_si128();
  for (size_t off = 0; off < n; off += 16) {
    __m128i x = _mm_load_si128(reinterpret_cast<const __m128i*>(a + off));
    __m128i y = _mm_load_si128(reinterpret_cast<const __m128i*>(b + off));
    diff = _mm_or_si128(diff, _mm_xor_si128(x, y));
    if (off < lo || off >= hi) dirty = _mm_or_si128(dirty, _mm_xor_si128(x, f));
  }
  const __m128i zero = _mm_setzero_si128();
  return {_mm_movemask_epi8(_mm_cmpeq_epi8(diff, zero)) == 0xffff,
          _mm_movemask_epi8(_mm_cmpeq_epi8(dirty, zero)) == 0xffff};
}

size_t FirstNonZeroBlock(const uint8_t* p, size_t n) {
  assert(reinterpret_cast<uintptr_t>(p) % 64 == 0 && n % 64 == 0);
  return kHaveAvx2 ? FirstNonZeroBlockAvx2(p, n) : FirstNonZeroBlockSse2(p, n);
}

PagePairScan ScanPagePair(const uint8_t* a, const uint8_t* b, size_t n, uint8_t fill,
                          size_t placed_begin, size_t placed_end) {
  assert(reinterpret_cast<uintptr_t>(a) % 32 == 0 && reinterpret_cast<uintptr_t>(b) % 32 == 0);
  assert(n % 32 == 0 && placed_begin <= placed_end && placed_end <= n);
  // The 32-byte blocks wholly outside the placed bytes are checked against
  // the fill; the (at most two) blocks the placed range starts and ends in
  // are checked byte by byte outside it.
  const size_t lo = placed_begin & ~size_t{31};
  const size_t hi = placed_begin == placed_end ? lo : (placed_end + 31) & ~size_t{31};
  PagePairScan scan =
      kHaveAvx2 ? ScanPagePairAvx2(a, b, n, fill, lo, hi) : ScanPagePairSse2(a, b, n, fill, lo, hi);
  for (size_t i = lo; scan.a_clean && i < placed_begin; ++i) scan.a_clean = a[i] == fill;
  for (size_t i = placed_end; scan.a_clean && i < hi; ++i) scan.a_clean = a[i] == fill;
  return scan;
}

}  // namespace patchlab::emulator

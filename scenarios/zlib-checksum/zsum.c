/* zsum: a block-checksum service on the system's real libz.so.1. Worker
 * threads checksum pseudo-random blocks with checksum_block() (libz's crc32
 * and adler32 folded into one 64-bit value) and compare every result with an
 * independent bit-by-bit reference computed here, so a patch to either the
 * service or libz that changes a result is counted as an error.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "labstats.h"

#define BLOCK 512

static struct labstats stats;

/* The service's checksum: crc32 in the high half, adler32 in the low half. */
__attribute__((noipa)) uint64_t checksum_block(const unsigned char* data, size_t len) {
  uLong crc = crc32(0L, Z_NULL, 0);
  uLong adler = adler32(0L, Z_NULL, 0);
  crc = crc32(crc, data, (uInt)len);
  adler = adler32(adler, data, (uInt)len);
  return ((uint64_t)crc << 32) | (uint64_t)adler;
}

static uint64_t reference(const unsigned char* data, size_t len) {
  uint32_t crc = 0xffffffffu;
  for (size_t i = 0; i < len; ++i) {
    crc ^= data[i];
    for (int b = 0; b < 8; ++b) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
  }
  crc ^= 0xffffffffu;
  uint32_t a = 1, s = 0;
  for (size_t i = 0; i < len; ++i) {
    a = (a + data[i]) % 65521u;
    s = (s + a) % 65521u;
  }
  return ((uint64_t)crc << 32) | ((uint64_t)s << 16 | a);
}

/* The "receive" step of a request: copies the block into the request
 * buffer, mixing a running digest of it the way a framing layer would. It
 * keeps most of each thread's time outside checksum_block, as in a real
 * service, so the patch core finds moments when no thread is inside it. */
static uint64_t receive(unsigned char* dst, const unsigned char* src, size_t len, uint64_t digest) {
  for (int round = 0; round < 3; ++round) {
    for (size_t i = 0; i < len; ++i) {
      digest = (digest ^ src[i]) * 0x100000001b3ull;
      dst[i] = src[i];
    }
  }
  return digest;
}

struct worker {
  int id;
  long duration_ms;
  uint64_t start_ns;
};

static void* client(void* arg) {
  struct worker* w = (struct worker*)arg;
  unsigned char blocks[16][BLOCK];
  uint64_t expected[16];
  uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(w->id + 1);
  /* The reference is slow on purpose (bitwise); compute it once per block. */
  for (int b = 0; b < 16; ++b) {
    for (int i = 0; i < BLOCK; ++i) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      blocks[b][i] = (unsigned char)x;
    }
    expected[b] = reference(blocks[b], (size_t)(BLOCK - b * 7));
  }
  uint64_t n = 0, digest = 0;
  unsigned char request[BLOCK];
  while (!labstats_time_up(w->start_ns, w->duration_ms)) {
    for (int i = 0; i < 64; ++i, ++n) {
      int b = (int)(n % 16);
      size_t len = (size_t)(BLOCK - b * 7);
      digest = receive(request, blocks[b], len, digest);
      int ok = checksum_block(request, len) == expected[b];
      atomic_fetch_add(ok ? &stats.ops : &stats.errors, 1);
    }
  }
  /* The digest only keeps the receive step from being optimized away. */
  if (digest == 42) fputs("", stderr);
  return NULL;
}

int main(int argc, char** argv) {
  int threads = 2;
  long duration_ms = 10000;
  labstats_args(argc, argv, &threads, &duration_ms);
  labstats_start(&stats);
  pthread_t tids[256];
  struct worker workers[256];
  uint64_t start = labstats_clock_ns(CLOCK_MONOTONIC);
  for (int i = 0; i < threads; ++i) {
    workers[i] = (struct worker){i, duration_ms, start};
    pthread_create(&tids[i], NULL, client, &workers[i]);
  }
  for (int i = 0; i < threads; ++i) pthread_join(tids[i], NULL);
  return labstats_finish(&stats);
}

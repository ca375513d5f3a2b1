/* hasher: a content-addressing service. Worker threads hash 64-byte records
 * with hash_record() (FNV-1a, 64 bit) and check each hash against a second,
 * independent implementation. The bundled patch gives the same hashes but is
 * many times slower: the lab must measure the CPU cost per record and flag it
 * against the scenario's overhead limit. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "labstats.h"

#define RECORD 64

static struct labstats stats;

__attribute__((noipa)) uint64_t hash_record(const unsigned char* data, size_t len) {
  uint64_t h = 14695981039346656037ull;
  for (size_t i = 0; i < len; ++i) h = (h ^ data[i]) * 1099511628211ull;
  return h;
}

static uint64_t reference(const unsigned char* data, size_t len) {
  uint64_t h = 0xcbf29ce484222325ull;
  while (len--) {
    h ^= *data++;
    h *= 0x100000001b3ull;
  }
  return h;
}

/* The framing step of a request, outside hash_record: a few passes of
 * mixing over the record. A real service spends most of its time around the
 * function being patched, not in it; without this, some thread would always
 * be inside hash_record and the patch core could never find a safe moment. */
static uint64_t frame(const unsigned char* data, size_t len, uint64_t digest) {
  for (int round = 0; round < 8; ++round) {
    for (size_t i = 0; i < len; ++i) digest = (digest + data[i]) * 0x9e3779b97f4a7c15ull;
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
  unsigned char records[32][RECORD];
  uint64_t expected[32];
  uint64_t x = 0x9e3779b97f4a7c15ull ^ (uint64_t)w->id;
  for (int r = 0; r < 32; ++r) {
    for (int i = 0; i < RECORD; ++i) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      records[r][i] = (unsigned char)x;
    }
    expected[r] = reference(records[r], RECORD);
  }
  uint64_t n = 0, digest = 0;
  while (!labstats_time_up(w->start_ns, w->duration_ms)) {
    for (int i = 0; i < 256; ++i, ++n) {
      int r = (int)(n % 32);
      digest = frame(records[r], RECORD, digest);
      int ok = hash_record(records[r], RECORD) == expected[r];
      atomic_fetch_add(ok ? &stats.ops : &stats.errors, 1);
    }
  }
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

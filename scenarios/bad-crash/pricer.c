/* pricer: a multi-threaded pricing service. Worker threads price items with
 * price_item() and check every price against an independent formula. The
 * bundled patch for it is bad on purpose: under real traffic it crashes the
 * service, and the lab must catch that (verdict fail) rather than pass it. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

#include "labstats.h"

static struct labstats stats;

/* Price in cents of item `sku` in quantity `qty`: volume discount of 1% per
 * 10 items, capped at 30%. */
__attribute__((noipa)) uint64_t price_item(uint32_t sku, uint32_t qty) {
  uint64_t unit = 100 + (sku % 9000);
  uint64_t discount = qty / 10 > 30 ? 30 : qty / 10;
  return unit * qty * (100 - discount) / 100;
}

static uint64_t reference(uint32_t sku, uint32_t qty) {
  uint64_t unit = 100 + (sku % 9000);
  uint64_t pct = 100;
  for (uint32_t q = 10; q <= qty && pct > 70; q += 10) --pct;
  return unit * qty * pct / 100;
}

struct worker {
  int id;
  long duration_ms;
  uint64_t start_ns;
};

static void* client(void* arg) {
  struct worker* w = (struct worker*)arg;
  uint64_t x = 0x2545f4914f6cdd1dull * (uint64_t)(w->id + 1);
  while (!labstats_time_up(w->start_ns, w->duration_ms)) {
    for (int i = 0; i < 256; ++i) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      uint32_t sku = (uint32_t)x, qty = (uint32_t)(x >> 40) % 500 + 1;
      int ok = price_item(sku, qty) == reference(sku, qty);
      atomic_fetch_add(ok ? &stats.ops : &stats.errors, 1);
    }
  }
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

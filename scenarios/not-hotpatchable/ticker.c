/* ticker: a service with two functions no live patch can replace.
 *
 * poll_events() is the event loop of a dedicated thread: it never returns, so
 * some thread is always inside it and the patch core can never find a moment
 * when replacing it is safe. feature_level() is three bytes long
 * (xor eax,eax; ret), too short for the five-byte jump a trampoline needs.
 * Both patches must be refused with nothing changed — "not hotpatchable,
 * needs a restart" — while the service keeps running correctly. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

#include "labstats.h"

static struct labstats stats;
static _Atomic int stop_polling;
static _Atomic uint64_t events;

__attribute__((noipa)) int feature_level(void) { return 0; }

__attribute__((noipa)) void poll_events(void) {
  uint64_t seen = 0;
  while (!atomic_load(&stop_polling)) {
    seen = seen * 6364136223846793005ull + 1442695040888963407ull;
    if ((seen & 0xff) == 0) atomic_fetch_add(&events, 1);
  }
}

static void* poller(void* arg) {
  (void)arg;
  poll_events();
  return NULL;
}

struct worker {
  int id;
  long duration_ms;
  uint64_t start_ns;
};

static void* client(void* arg) {
  struct worker* w = (struct worker*)arg;
  while (!labstats_time_up(w->start_ns, w->duration_ms)) {
    for (int i = 0; i < 1024; ++i) {
      int ok = feature_level() == 0;
      atomic_fetch_add(ok ? &stats.ops : &stats.errors, 1);
    }
  }
  return NULL;
}

int main(int argc, char** argv) {
  int threads = 1;
  long duration_ms = 10000;
  labstats_args(argc, argv, &threads, &duration_ms);
  labstats_start(&stats);
  pthread_t poll_tid, tids[256];
  struct worker workers[256];
  pthread_create(&poll_tid, NULL, poller, NULL);
  uint64_t start = labstats_clock_ns(CLOCK_MONOTONIC);
  for (int i = 0; i < threads; ++i) {
    workers[i] = (struct worker){i, duration_ms, start};
    pthread_create(&tids[i], NULL, client, &workers[i]);
  }
  for (int i = 0; i < threads; ++i) pthread_join(tids[i], NULL);
  atomic_store(&stop_polling, 1);
  pthread_join(poll_tid, NULL);
  return labstats_finish(&stats);
}

/* A new poll_events() that counts every event. It cannot be applied live:
 * the old one never returns, so a thread is always inside it. */
#include <stdatomic.h>
#include <stdint.h>

extern _Atomic int stop_polling;
extern _Atomic uint64_t events;

void poll_events(void) {
  while (!atomic_load(&stop_polling)) atomic_fetch_add(&events, 1);
}

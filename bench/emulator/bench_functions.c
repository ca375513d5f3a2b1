// Functions the checker benchmark runs: a parse-like state machine that writes
// a result struct (about 700 instructions per call on the benchmark's inputs), an adler32-like
// loop (loads only), and two that do next to nothing, to measure what a check
// adds per pair beside the functions' own run (do_nothing: no argument;
// first_byte: one read-only buffer).
#include <stddef.h>
#include <stdint.h>

struct header {
  uint32_t key_hash;
  uint32_t value_hash;
  int32_t key_len;
  int32_t value_len;
  int32_t number;
  int32_t fields;
  int32_t errors;
  int32_t spaces;
};

// Counters live in locals and reach *h once at the end, as a careful parser
// does (char pointers may alias *h, so updating it in the loop would store on
// every byte; Unicorn 2.0.1's stores cost ~115 ns each, see FACTS.md).
__attribute__((noipa)) int parse_header(const char* buf, size_t len, struct header* h) {
  enum { kKey, kSpace, kValue } state = kKey;
  uint32_t key_hash = 2166136261u, value_hash = 2166136261u;
  int32_t key_len = 0, value_len = 0, number = 0, fields = 0, errors = 0, spaces = 0;
  for (size_t i = 0; i < len; ++i) {
    unsigned char c = (unsigned char)buf[i];
    switch (state) {
      case kKey:
        if (c == ':') {
          state = kSpace;
        } else if (c >= 'A' && c <= 'Z') {
          key_hash = (key_hash ^ (c + 32)) * 16777619u;
          key_len++;
        } else if (c > ' ' && c < 127) {
          key_hash = (key_hash ^ c) * 16777619u;
          key_len++;
        } else {
          errors++;
        }
        break;
      case kSpace:
        if (c == ' ' || c == '\t') {
          spaces++;
          break;
        }
        state = kValue;
        /* fall through */
      case kValue:
        if (c == ';' || c == ',') {
          fields++;
        } else if (c >= '0' && c <= '9') {
          number = number * 10 + (c - '0');
        }
        value_hash = (value_hash ^ c) * 16777619u;
        value_len++;
        break;
    }
  }
  h->key_hash = key_hash;
  h->value_hash = value_hash;
  h->key_len = key_len;
  h->value_len = value_len;
  h->number = number;
  h->fields = fields;
  h->errors = errors;
  h->spaces = spaces;
  if (state == kKey) return -1;
  return errors > 0 ? 1 : 0;
}

__attribute__((noipa)) uint32_t adler_like(const unsigned char* buf, size_t len) {
  uint32_t a = 1, b = 0;
  for (size_t i = 0; i < len; ++i) {
    a += buf[i];
    if (a >= 65521) a -= 65521;
    b += a;
    if (b >= 65521) b -= 65521;
  }
  return (b << 16) | a;
}

__attribute__((noipa)) void do_nothing(void) {}

__attribute__((noipa)) int first_byte(const unsigned char* buf, size_t len) {
  return len == 0 ? -1 : buf[0];
}

#ifdef BENCH_BIG_DATA
// 4 MiB of .bss beside the functions above, which never touch it: what a
// check costs must not grow with the size of the image's data.
static unsigned char big_state[4u << 20];
unsigned touch_big_state(size_t i) { return big_state[i % sizeof big_state]++; }
#endif

/* A "defensive" hash_record that re-hashes the record eight times and checks
 * that every pass agrees before answering. Same hashes as the original, at
 * roughly eight times the CPU per record: correct, but too slow to ship. */
#include <stddef.h>
#include <stdint.h>

static uint64_t fnv1a(const volatile unsigned char* data, size_t len) {
  uint64_t h = 14695981039346656037ull;
  for (size_t i = 0; i < len; ++i) h = (h ^ data[i]) * 1099511628211ull;
  return h;
}

uint64_t hash_record(const unsigned char* data, size_t len) {
  uint64_t first = fnv1a(data, len);
  for (int pass = 1; pass < 8; ++pass) {
    if (fnv1a(data, len) != first) return 0;
  }
  return first;
}

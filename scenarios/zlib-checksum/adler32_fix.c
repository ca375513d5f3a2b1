/* A replacement for libz's exported adler32(): the same checksum, computed
 * here with the usual deferred-modulo loop (5552 bytes between reductions, the
 * largest run that cannot overflow 32 bits). Replaces the function inside the
 * loaded libz.so.1 itself, so every caller in the process gets it. */
#include <stddef.h>

#define BASE 65521u
#define NMAX 5552u

unsigned long adler32(unsigned long adler, const unsigned char* buf, unsigned int len) {
  unsigned long a = adler & 0xffff, s = (adler >> 16) & 0xffff;
  if (buf == NULL) return 1;
  while (len > 0) {
    unsigned int n = len < NMAX ? len : NMAX;
    len -= n;
    while (n--) {
      a += *buf++;
      s += a;
    }
    a %= BASE;
    s %= BASE;
  }
  return (s << 16) | a;
}

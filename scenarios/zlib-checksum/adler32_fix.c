/* A replacement for libz's exported adler32(): the same checksum, computed
 * here with the usual deferred-modulo loop (5552 bytes between reductions, the
 * largest run that cannot overflow 32 bits). Replaces the function inside the
 * loaded libz.so.1 itself, so every caller in the process gets it. */
#include <stddef.h>

#define BASE 65521u
#define NMAX 5552u

unsigned long adler32(unsigned long adler, const unsigned char* buf, unsigned int len) {
  unsigned long a = adler & 0xffff, s = (adler >> 16) & 0xffff;
  /* libz returns 1 for a NULL buffer too, except with len 1, where it reads
   * buf[0] and faults; this one returns 1 there as well. */
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
  /* libz reduces both halves even when no byte was added, so a value whose
   * halves are not yet reduced (e.g. 65521) comes back reduced there too. */
  return ((s % BASE) << 16) | (a % BASE);
}

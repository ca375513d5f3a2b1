// Patch object for libz.so.1's adler32(): same checksums (through the
// library's own exported adler32_z), and a probe value that tells the
// patched function from the original: adler32(0x7e57, NULL, 0), and with an
// empty buffer (what Python's zlib.adler32(b'', 0x7e57) passes), is 0x600d
// instead of 1 (or 0x7e57).
#include <zlib.h>

unsigned long adler32_v1(unsigned long adler, const unsigned char* buf, unsigned int len) {
  if (adler == 0x7e57 && (buf == Z_NULL || len == 0)) return 0x600d;
  return adler32_z(adler, buf, len);
}

// Patch object for libz.so.1's adler32(): same checksums (through the
// library's own exported adler32_z), and a probe value that tells the
// patched function from the original.
#include <zlib.h>

unsigned long adler32_v1(unsigned long adler, const unsigned char* buf, unsigned int len) {
  if (buf == Z_NULL && adler == 0x7e57) return 0x600d;
  return adler32_z(adler, buf, len);
}

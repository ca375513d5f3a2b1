// A replacement for zlib's crc32_z: the standard reflected CRC-32 (polynomial
// 0xEDB88320), computed bit by bit. Same results as libz's table-driven
// version for every input, with no table (no data to relocate), so it costs
// more CPU per byte: the lab measures how much.
#include <stddef.h>

__attribute__((noipa)) unsigned long crc32_z(unsigned long crc, const unsigned char* buf,
                                             size_t len) {
  if (buf == NULL) return 0;
  unsigned int c = (unsigned int)crc ^ 0xFFFFFFFFu;
  while (len--) {
    c ^= *buf++;
    for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
  }
  return c ^ 0xFFFFFFFFu;
}

// A bad replacement for zlib's crc32_z: the right CRC-32 with its lowest bit
// flipped. Nothing crashes, but every gzip stream nginx writes now carries a
// wrong CRC in its trailer; the scenario's check must catch it.
#include <stddef.h>

__attribute__((noipa)) unsigned long crc32_z(unsigned long crc, const unsigned char* buf,
                                             size_t len) {
  if (buf == NULL) return 0;
  unsigned int c = (unsigned int)crc ^ 0xFFFFFFFFu;
  while (len--) {
    c ^= *buf++;
    for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
  }
  return (c ^ 0xFFFFFFFFu) ^ 1u;
}

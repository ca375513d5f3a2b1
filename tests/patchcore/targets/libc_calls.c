// A program whose interesting calls go through glibc's IFUNCs: every 10 ms
// it asks strlen() a probe question and copies with memcpy() (through
// volatile pointers, so GCC cannot fold or inline them) and prints
//   tick calls=N strlen=L wrong=W
// strlen=8 with glibc's own strlen, 0x600d with patch_libc.c's. W counts
// wrong lengths of an ordinary string and wrong copies (it must stay 0).
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef size_t (*StrlenFn)(const char*);
typedef void* (*MemcpyFn)(void*, const void*, size_t);
static StrlenFn volatile strlen_fn = strlen;
static MemcpyFn volatile memcpy_fn = memcpy;

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  char probe[] = "hotpatch";
  char ordinary[] = "an ordinary string";
  unsigned char src[64], dst[64];
  for (long calls = 1, wrong = 0;; ++calls) {
    if (strlen_fn(ordinary) != sizeof ordinary - 1) ++wrong;
    for (int i = 0; i < 64; ++i) src[i] = (unsigned char)(i + calls);
    memcpy_fn(dst, src, sizeof dst);
    for (int i = 0; i < 64; ++i) wrong += dst[i] != src[i];
    printf("tick calls=%ld strlen=%zu wrong=%ld\n", calls, strlen_fn(probe), wrong);
    usleep(10000);
  }
}

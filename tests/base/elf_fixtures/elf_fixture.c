// A small program the ELF reader tests read (never run): a static function, a
// static global, an exported function, and a call through the PLT.
#include <stdio.h>
#include <zlib.h>

static int counter = 7;

__attribute__((noipa)) static int hidden_helper(int x) { return x * 3 + counter++; }

__attribute__((noipa)) int exported_function(int x) { return hidden_helper(x) + 1; }

int main(int argc, char** argv) {
  (void)argv;
  printf("%d %lu\n", exported_function(argc), adler32(1, (const unsigned char*)"a", 1));
  return 0;
}

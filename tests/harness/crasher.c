/* A guest workload for the crash-detection tests: fails in the way argv[1] says.
 *   crasher segv    write through a null pointer (SIGSEGV, "segfault at" in the kernel log)
 *   crasher abort   abort() (SIGABRT; logged only with print-fatal-signals=1)
 *   crasher exit N  exit with code N
 *   crasher sleep   sleep until killed
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

__attribute__((noipa)) static void Crash(volatile int* p) { *p = 42; }

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  printf("crasher: %s\n", argv[1]);
  fflush(stdout);
  if (strcmp(argv[1], "segv") == 0) Crash((volatile int*)0);
  if (strcmp(argv[1], "abort") == 0) abort();
  if (strcmp(argv[1], "exit") == 0 && argc > 2) return atoi(argv[2]);
  if (strcmp(argv[1], "sleep") == 0) {
    for (;;) pause();
  }
  return 3;
}

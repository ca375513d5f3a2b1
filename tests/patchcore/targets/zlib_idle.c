// A single-threaded program on the system's libz that is idle nearly all the
// time: every PERIOD ms it asks adler32() a probe question and prints a line
// when the answer changes (and once at the start):
//   pid=P z=1 wrong=W      the original adler32 (adler32(0x7e57, NULL, 0) == 1)
//   pid=P z=600d wrong=W   patch_zlib.c's replacement
// W counts wrong checksums of a fixed buffer (it must stay 0).
// Options:
//   --period MS     how often it looks (default 50)
//   --workers N     a service: this process is the master and forks N
//                   workers that do the same; SIGUSR1 forks one more worker,
//                   SIGUSR2 forks one that executes this program again (a
//                   fresh image, as a master that re-executes its workers does)
// The master and every worker print to the same stdout (O_APPEND lines).
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

static volatile sig_atomic_t fork_plain, fork_exec;
static const char* self_path;
static int period_ms = 50;

static void OnUsr1(int sig) {
  (void)sig;
  fork_plain = 1;
}
static void OnUsr2(int sig) {
  (void)sig;
  fork_exec = 1;
}

static void Loop(int is_master);

// A worker: a plain fork (it shares the master's code, patched or not), or
// one that executes this program again.
static void StartWorker(int exec_it) {
  pid_t child = fork();
  if (child != 0) return;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (exec_it) {
    char period[16];
    snprintf(period, sizeof period, "%d", period_ms);
    execl(self_path, self_path, "--period", period, (char*)NULL);
    _exit(127);
  }
  Loop(0);
}

static void Loop(int is_master) {
  const unsigned char data[] = "hotpatch";
  const unsigned long want = adler32(1, data, 8);
  unsigned long last = 0;
  long wrong = 0;
  for (int first = 1;; first = 0) {
    if (adler32(1, data, 8) != want) ++wrong;
    unsigned long z = adler32(0x7e57, Z_NULL, 0);
    if (first || z != last) {
      printf("pid=%d z=%lx wrong=%ld\n", (int)getpid(), z, wrong);
      fflush(stdout);
      last = z;
    }
    usleep((useconds_t)period_ms * 1000);
    if (!is_master) continue;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    if (fork_plain) {
      fork_plain = 0;
      StartWorker(0);
    }
    if (fork_exec) {
      fork_exec = 0;
      StartWorker(1);
    }
  }
}

int main(int argc, char** argv) {
  int workers = -1;
  self_path = argv[0];
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--period") && i + 1 < argc) {
      period_ms = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--workers") && i + 1 < argc) {
      workers = atoi(argv[++i]);
    } else {
      fprintf(stderr, "zlib_idle: unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (workers < 0) Loop(0);
  signal(SIGUSR1, OnUsr1);
  signal(SIGUSR2, OnUsr2);
  for (int i = 0; i < workers; ++i) StartWorker(0);
  Loop(1);
  return 0;
}

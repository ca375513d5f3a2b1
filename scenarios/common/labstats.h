/* labstats: how a scenario's target program reports its progress to the lab.
 *
 * The target counts the operations it completed and the wrong results it saw
 * (it checks its own results on every call). A reporter thread writes, every
 * 100 ms, one line to the file named by the environment variable
 * PATCHLAB_STATS (atomically: temporary file, then rename):
 *
 *   ops=<completed operations> errors=<wrong results> cpu_ns=<process CPU time> wall_ns=<monotonic
 * clock>
 *
 * CPU time and operations are read together, so the lab divides one by the
 * other without mixing two clocks. At exit the same line goes to stdout.
 *
 * SIGTERM asks the target to stop early: workers finish their current batch
 * and the target exits normally (0 when every result was right), the way a
 * service shuts down; the lab stops a workload that way once it has measured.
 * Header-only on purpose: each target is built from its own folder with
 * nothing but the host compiler.
 */
#ifndef PATCHLAB_SCENARIOS_LABSTATS_H_
#define PATCHLAB_SCENARIOS_LABSTATS_H_

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct labstats {
  _Atomic uint64_t ops;
  _Atomic uint64_t errors;
  _Atomic int stop;
  pthread_t reporter;
  char path[512];
};

static volatile sig_atomic_t labstats_terminated;

static void labstats_on_sigterm(int sig) {
  (void)sig;
  labstats_terminated = 1;
}

static uint64_t labstats_clock_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int labstats_format(struct labstats* s, char* buf, size_t size) {
  return snprintf(buf, size, "ops=%llu errors=%llu cpu_ns=%llu wall_ns=%llu\n",
                  (unsigned long long)atomic_load(&s->ops),
                  (unsigned long long)atomic_load(&s->errors),
                  (unsigned long long)labstats_clock_ns(CLOCK_PROCESS_CPUTIME_ID),
                  (unsigned long long)labstats_clock_ns(CLOCK_MONOTONIC));
}

static void labstats_write(struct labstats* s) {
  if (s->path[0] == '\0') return;
  char tmp[600], line[200];
  snprintf(tmp, sizeof tmp, "%s.tmp", s->path);
  int n = labstats_format(s, line, sizeof line);
  FILE* f = fopen(tmp, "w");
  if (f == NULL) return;
  fwrite(line, 1, (size_t)n, f);
  fclose(f);
  rename(tmp, s->path);
}

static void* labstats_reporter(void* arg) {
  struct labstats* s = (struct labstats*)arg;
  while (!atomic_load(&s->stop)) {
    labstats_write(s);
    usleep(100 * 1000);
  }
  return NULL;
}

static void labstats_start(struct labstats* s) {
  const char* path = getenv("PATCHLAB_STATS");
  memset(s->path, 0, sizeof s->path);
  if (path != NULL) strncpy(s->path, path, sizeof s->path - 1);
  atomic_store(&s->stop, 0);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = labstats_on_sigterm;
  sigaction(SIGTERM, &sa, NULL);
  pthread_create(&s->reporter, NULL, labstats_reporter, s);
}

/* Stops the reporter, writes the last line and prints it; returns the exit
 * status the target should end with: 0 when every result was right. */
static int labstats_finish(struct labstats* s) {
  atomic_store(&s->stop, 1);
  pthread_join(s->reporter, NULL);
  labstats_write(s);
  char line[200];
  labstats_format(s, line, sizeof line);
  fputs(line, stdout);
  fflush(stdout);
  return atomic_load(&s->errors) == 0 ? 0 : 1;
}

/* Parses "--threads N --duration-ms D" (both optional). */
static void labstats_args(int argc, char** argv, int* threads, long* duration_ms) {
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--threads") == 0) {
      *threads = atoi(argv[i + 1]);
    } else if (strcmp(argv[i], "--duration-ms") == 0) {
      *duration_ms = atol(argv[i + 1]);
    } else {
      fprintf(stderr, "%s: unknown argument %s (usage: --threads N --duration-ms D)\n", argv[0],
              argv[i]);
      exit(2);
    }
  }
  if (*threads < 1 || *threads > 256 || *duration_ms < 1) {
    fprintf(stderr, "%s: bad --threads or --duration-ms\n", argv[0]);
    exit(2);
  }
}

static int labstats_time_up(uint64_t start_ns, long duration_ms) {
  if (labstats_terminated) return 1;
  return labstats_clock_ns(CLOCK_MONOTONIC) - start_ns >= (uint64_t)duration_ms * 1000000u;
}

#endif /* PATCHLAB_SCENARIOS_LABSTATS_H_ */

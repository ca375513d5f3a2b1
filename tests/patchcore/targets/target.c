// A real program for the patch core's tests. Threads call compute() in a
// loop and check every result; the main thread prints a tick line every 20 ms:
//   tick calls=N wrong=W v0=.. v1=.. v2=.. v3=.. private=P z=Z sig=S child=C
// v<k> counts results of patch version k (0 = original code). Options:
//   --threads N   hammering threads (default 1)
//   --block FILE  one thread sits in slow_path() until FILE exists
//   --churn       threads hammer malloc/free and dlopen/dlclose
//   --spawn       a thread keeps creating and joining short-lived threads
//   --zlib        a thread checks adler32() of libz and probes its version
//   --hot N       N threads spend nearly all their time inside hot_sum()
//                 (a few microseconds outside per call)
//   --recurse FILE one thread sits at the bottom of recurse() (depth 8) until
//                 FILE exists, then recurses again every 10 ms
// SIGUSR1 runs compute() in a signal handler; SIGUSR2 forks a child that
// calls compute() and reports its version.
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

// The target's own private state, reached by patches through --ref.
static volatile long private_calls = 0;

__attribute__((noipa)) static long private_helper(long x) { return 2 * x + 1; }

__attribute__((noipa)) long compute(long x) { return private_helper(x); }

static const char* release_file;

__attribute__((noipa)) long slow_path(long x) {
  if (x < 0) {
    while (access(release_file, F_OK) != 0) usleep(1000);
  }
  return x + 7;
}

// A hot function: each call runs for about a millisecond. Versions add
// 1000000 * version to the sum, as compute() does.
__attribute__((noipa)) long hot_sum(long x) {
  long s = 0;
  for (long i = 0; i < 200000; ++i) s += (x ^ i) & 1;
  return s;
}

// Recursion: the bottom frame waits for the release file, so every level of
// recurse() is on the thread's stack meanwhile.
__attribute__((noipa)) long recurse(long depth) {
  if (depth == 0) {
    while (access(release_file, F_OK) != 0) usleep(1000);
    return 0;
  }
  return recurse(depth - 1) + 1;
}

// Functions with shapes the prologue check must refuse.
__asm__(
    ".text\n"
    ".globl too_short\n.type too_short,@function\n"
    "too_short:\n  xorl %eax,%eax\n  ret\n"
    ".size too_short, .-too_short\n"
    ".globl branch_back\n.type branch_back,@function\n"
    "branch_back:\n  movq %rdi,%rax\n1:\n  decq %rax\n  jnz 1b\n  ret\n"
    ".size branch_back, .-branch_back\n");
long too_short(void);
long branch_back(long);

#define kMaxVersions 4
static atomic_long calls, wrong, versions[kMaxVersions];
static atomic_long z_probe, sig_version = -1, child_version = -1;
static volatile sig_atomic_t fork_requested;

static int Classify(long x, long r) {
  long d = r - (2 * x + 1);
  if (d < 0 || d % 1000000 != 0 || d / 1000000 >= kMaxVersions) return -1;
  return (int)(d / 1000000);
}

static void* Hammer(void* arg) {
  long x = (long)(size_t)arg * 7919;
  for (;;) {
    for (int i = 0; i < 1000; ++i) {
      ++x;
      int v = Classify(x, compute(x));
      if (v < 0) {
        atomic_fetch_add(&wrong, 1);
      } else {
        atomic_fetch_add_explicit(&versions[v], 1, memory_order_relaxed);
      }
    }
    atomic_fetch_add_explicit(&calls, 1000, memory_order_relaxed);
  }
  return NULL;
}

static void* Blocker(void* arg) {
  (void)arg;
  for (;;) {
    if (slow_path(-1) != 6) atomic_fetch_add(&wrong, 1);
    sleep(1000000);
  }
  return NULL;
}

static void* Hot(void* arg) {
  long x = (long)(size_t)arg;
  for (;;) {
    ++x;
    long r = hot_sum(x);
    long d = r - 100000;  // half of the 200000 bits (x ^ i) & 1 are set
    if (d < 0 || d % 1000000 != 0 || d / 1000000 >= kMaxVersions) {
      atomic_fetch_add(&wrong, 1);
    } else {
      atomic_fetch_add_explicit(&versions[d / 1000000], 1, memory_order_relaxed);
    }
  }
  return NULL;
}

static void* Recurser(void* arg) {
  (void)arg;
  for (;;) {
    if (recurse(8) != 8) atomic_fetch_add(&wrong, 1);
    usleep(10000);
  }
  return NULL;
}

static void* Churn(void* arg) {
  long n = (long)(size_t)arg;
  for (;;) {
    if (n % 2) {
      void* h = dlopen("libz.so.1", RTLD_NOW);
      if (h) dlclose(h);
    } else {
      void* p = malloc(64 + (size_t)(n++ % 4096));
      free(p);
    }
  }
  return NULL;
}

static void* Short(void* arg) { return arg; }

static void* Spawn(void* arg) {
  (void)arg;
  for (;;) {
    pthread_t t;
    if (pthread_create(&t, NULL, Short, NULL) == 0) pthread_join(t, NULL);
  }
  return NULL;
}

static void* Zlib(void* arg) {
  (void)arg;
  const unsigned char data[] = "hotpatch";
  const unsigned long want = adler32(1, data, 8);
  for (;;) {
    for (int i = 0; i < 1000; ++i) {
      if (adler32(1, data, 8) != want) atomic_fetch_add(&wrong, 1);
    }
    atomic_store(&z_probe, (long)adler32(0x7e57, Z_NULL, 0));
    usleep(100);
  }
  return NULL;
}

static void OnUsr1(int sig) {
  (void)sig;
  atomic_store(&sig_version, Classify(3, compute(3)));
}

static void OnUsr2(int sig) {
  (void)sig;
  fork_requested = 1;
}

static void Start(void* (*fn)(void*), long arg) {
  pthread_t t;
  if (pthread_create(&t, NULL, fn, (void*)(size_t)arg) != 0) {
    perror("pthread_create");
    exit(1);
  }
}

int main(int argc, char** argv) {
  int threads = 1;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
      threads = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--block") && i + 1 < argc) {
      release_file = argv[++i];
      Start(Blocker, 0);
    } else if (!strcmp(argv[i], "--churn")) {
      for (int k = 0; k < 4; ++k) Start(Churn, k);
    } else if (!strcmp(argv[i], "--hot") && i + 1 < argc) {
      threads = 0;
      for (int k = atoi(argv[++i]); k > 0; --k) Start(Hot, k);
    } else if (!strcmp(argv[i], "--recurse") && i + 1 < argc) {
      release_file = argv[++i];
      Start(Recurser, 0);
    } else if (!strcmp(argv[i], "--spawn")) {
      Start(Spawn, 0);
    } else if (!strcmp(argv[i], "--zlib")) {
      Start(Zlib, 0);
    } else if (!strcmp(argv[i], "--shapes")) {
      // Keep the refused shapes referenced.
      if (too_short() != 0 || branch_back(3) != 0) return 1;
    } else {
      fprintf(stderr, "target: unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  signal(SIGUSR1, OnUsr1);
  signal(SIGUSR2, OnUsr2);
  for (int i = 0; i < threads; ++i) Start(Hammer, i);
  printf("ready pid=%d\n", getpid());
  fflush(stdout);
  for (;;) {
    usleep(20000);
    if (fork_requested) {
      fork_requested = 0;
      pid_t child = fork();
      if (child == 0) _exit(Classify(11, compute(11)) + 10);
      int status = 0;
      if (child > 0 && waitpid(child, &status, 0) == child && WIFEXITED(status)) {
        atomic_store(&child_version, WEXITSTATUS(status) - 10);
      }
    }
    printf(
        "tick calls=%ld wrong=%ld v0=%ld v1=%ld v2=%ld v3=%ld private=%ld z=%ld sig=%ld "
        "child=%ld\n",
        atomic_load(&calls), atomic_load(&wrong), atomic_load(&versions[0]),
        atomic_load(&versions[1]), atomic_load(&versions[2]), atomic_load(&versions[3]),
        private_calls, atomic_load(&z_probe), atomic_load(&sig_version),
        atomic_load(&child_version));
    fflush(stdout);
  }
}

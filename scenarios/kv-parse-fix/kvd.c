/* kvd: a multi-threaded in-memory key-value service. Worker threads play the
 * clients: each sends SET and GET requests for its own keys through the same
 * request parser a network front end would use, and checks every answer.
 *
 * parse_request() has the bug the bundled patch fixes: it copies the key into
 * a fixed 32-byte field without checking the key's length, and scans for the
 * end of the key without checking the request's length (an out-of-bounds read
 * and write on a long or unterminated key). Well-formed requests, which is all
 * the workload sends, are parsed the same by both versions.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "labstats.h"

#define KEY_MAX 32
#define VALUE_MAX 64
#define BUCKETS 1024

enum op { OP_INVALID = 0, OP_GET = 1, OP_SET = 2 };

struct request {
  int op;
  char key[KEY_MAX];
  char value[VALUE_MAX];
};

struct entry {
  char key[KEY_MAX];
  char value[VALUE_MAX];
  struct entry* next;
};

static struct entry* table[BUCKETS];
static pthread_mutex_t locks[BUCKETS];
static struct labstats stats;

/* Returns 0 on success, -1 on a malformed request. */
__attribute__((noipa)) int parse_request(const char* buf, size_t len, struct request* out) {
  size_t i = 0, k = 0;
  memset(out, 0, sizeof *out);
  if (len >= 4 && memcmp(buf, "GET ", 4) == 0) {
    out->op = OP_GET;
  } else if (len >= 4 && memcmp(buf, "SET ", 4) == 0) {
    out->op = OP_SET;
  } else {
    return -1;
  }
  i = 4;
  /* BUG: neither i < len nor k < KEY_MAX - 1 is checked. */
  while (buf[i] != ' ' && buf[i] != '\n') out->key[k++] = buf[i++];
  out->key[k] = '\0';
  if (k == 0) return -1;
  if (out->op == OP_GET) return buf[i] == '\n' ? 0 : -1;
  if (buf[i] != ' ') return -1;
  ++i;
  size_t v = 0;
  while (i < len && buf[i] != '\n') {
    if (v == VALUE_MAX - 1) return -1;
    out->value[v++] = buf[i++];
  }
  out->value[v] = '\0';
  return i < len ? 0 : -1;
}

static unsigned bucket_of(const char* key) {
  unsigned h = 2166136261u;
  for (; *key; ++key) h = (h ^ (unsigned char)*key) * 16777619u;
  return h % BUCKETS;
}

/* Executes one request; writes the GET result into `reply`. */
static int serve(const char* buf, size_t len, char* reply) {
  struct request req;
  if (parse_request(buf, len, &req) != 0) return -1;
  unsigned b = bucket_of(req.key);
  pthread_mutex_lock(&locks[b]);
  struct entry* e = table[b];
  while (e != NULL && strcmp(e->key, req.key) != 0) e = e->next;
  int rc = 0;
  if (req.op == OP_SET) {
    if (e == NULL) {
      e = calloc(1, sizeof *e);
      memcpy(e->key, req.key, KEY_MAX);
      e->next = table[b];
      table[b] = e;
    }
    memcpy(e->value, req.value, VALUE_MAX);
  } else if (e != NULL) {
    strcpy(reply, e->value);
  } else {
    rc = -1;
  }
  pthread_mutex_unlock(&locks[b]);
  return rc;
}

struct worker {
  int id;
  long duration_ms;
  uint64_t start_ns;
};

static void* client(void* arg) {
  struct worker* w = (struct worker*)arg;
  char req[160], reply[VALUE_MAX], expected[VALUE_MAX];
  uint64_t n = 0;
  while (!labstats_time_up(w->start_ns, w->duration_ms)) {
    for (int batch = 0; batch < 256; ++batch, ++n) {
      unsigned key = (unsigned)(n % 500);
      snprintf(expected, sizeof expected, "v%d-%u-%llu", w->id, key, (unsigned long long)n);
      int len = snprintf(req, sizeof req, "SET t%d-k%u %s\n", w->id, key, expected);
      int ok = serve(req, (size_t)len, reply) == 0;
      len = snprintf(req, sizeof req, "GET t%d-k%u\n", w->id, key);
      reply[0] = '\0';
      ok = ok && serve(req, (size_t)len, reply) == 0 && strcmp(reply, expected) == 0;
      /* A malformed request must be refused, never served. */
      len = snprintf(req, sizeof req, "PUT t%d-k%u\n", w->id, key);
      ok = ok && serve(req, (size_t)len, reply) == -1;
      atomic_fetch_add(ok ? &stats.ops : &stats.errors, 1);
    }
  }
  return NULL;
}

int main(int argc, char** argv) {
  int threads = 4;
  long duration_ms = 10000;
  labstats_args(argc, argv, &threads, &duration_ms);
  for (int i = 0; i < BUCKETS; ++i) pthread_mutex_init(&locks[i], NULL);
  labstats_start(&stats);
  pthread_t tids[256];
  struct worker workers[256];
  uint64_t start = labstats_clock_ns(CLOCK_MONOTONIC);
  for (int i = 0; i < threads; ++i) {
    workers[i] = (struct worker){i, duration_ms, start};
    pthread_create(&tids[i], NULL, client, &workers[i]);
  }
  for (int i = 0; i < threads; ++i) pthread_join(tids[i], NULL);
  return labstats_finish(&stats);
}

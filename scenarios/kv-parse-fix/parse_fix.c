/* The fix for kvd's parse_request: every read stays inside [buf, buf+len) and
 * a key longer than the field is refused instead of overflowing it. Identical
 * to the old function on well-formed requests. */
#include <stddef.h>
#include <string.h>

#define KEY_MAX 32
#define VALUE_MAX 64

enum op { OP_INVALID = 0, OP_GET = 1, OP_SET = 2 };

struct request {
  int op;
  char key[KEY_MAX];
  char value[VALUE_MAX];
};

int parse_request(const char* buf, size_t len, struct request* out) {
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
  while (i < len && buf[i] != ' ' && buf[i] != '\n') {
    if (k == KEY_MAX - 1) return -1;
    out->key[k++] = buf[i++];
  }
  out->key[k] = '\0';
  if (k == 0 || i >= len) return -1;
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

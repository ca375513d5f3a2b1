// Patch object for target.c: replacements for compute() in three versions,
// and for the functions the tests use to probe refusals.
//
// compute_v1 calls the target's private static function and writes the
// target's private global: both reach the target's own code and data through
// the package's --ref entries.
extern long private_helper(long x);
extern volatile long private_calls;

long compute_v1(long x) {
  private_calls++;
  return private_helper(x) + 1000000;
}

long compute_v2(long x) { return 2 * x + 1 + 2000000; }

long compute_v3(long x) { return 2 * x + 1 + 3000000; }

long slow_path_v1(long x) { return x + 7; }

// hot_sum plus 1000000 (version 1): the target's reference tells them apart.
long hot_sum_v1(long x) {
  long s = 1000000;
  for (long i = 0; i < 200000; ++i) s += (x ^ i) & 1;
  return s;
}

long recurse_v1(long depth) {
  long n = 0;
  while (depth-- > 0) ++n;
  return n;
}

long too_short_v1(void) { return 0; }

long branch_back_v1(long x) { return x - x; }

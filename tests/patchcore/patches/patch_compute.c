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

long too_short_v1(void) { return 0; }

long branch_back_v1(long x) { return x - x; }

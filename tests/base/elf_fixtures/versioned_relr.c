// A shared object for the ELF reader's tests: two versions of one function
// (an old `vfunc@VER_1` kept beside the default `vfunc@@VER_2`) and a table
// of 100 pointers to three private objects, whose RELATIVE relocations the
// RELR build packs into bitmaps.
__asm__(".symver vfunc_v1, vfunc@VER_1");
__asm__(".symver vfunc_v2, vfunc@@VER_2");

int vfunc_v1(int x) { return x + 1; }
int vfunc_v2(int x) { return x + 2; }

static int o0, o1, o2;
#define P3 &o0, &o1, &o2
#define P30 P3, P3, P3, P3, P3, P3, P3, P3, P3, P3
int *pointer_table[100] = {P30, P30, P30, P3, P3, P3, &o0};

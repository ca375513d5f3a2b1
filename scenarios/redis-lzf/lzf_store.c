// A replacement for liblzf's lzf_compress that never compresses: it answers 0,
// "the output would not fit", which callers such as redis take as "store the
// data uncompressed". Every value still saves and loads intact; RDB files get
// larger and saving costs less CPU. (A stand-in for a security fix that turns
// off a risky code path.)
__attribute__((noipa)) unsigned int lzf_compress(const void* in, unsigned int in_len, void* out,
                                                 unsigned int out_len) {
  (void)in;
  (void)in_len;
  (void)out;
  (void)out_len;
  return 0;
}

#!/bin/sh
# One correctness check: store a compressible value, make redis save its whole
# dataset to an RDB file and load it back (DEBUG RELOAD: values are compressed
# with liblzf's lzf_compress on save), then read the value back.
set -e
v=$(seq 1 2000 | tr '\n' ' ')
redis-cli -p 6390 set lab:check "$v" > /dev/null
redis-cli -p 6390 debug reload | grep -q OK
got=$(redis-cli -p 6390 get lab:check)
[ "$got" = "$v" ]
echo ok

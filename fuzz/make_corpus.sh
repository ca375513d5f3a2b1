#!/usr/bin/env bash
# Regenerates the seed files of fuzz/corpus/ that are made from other files:
# ELF files built from the repository's own sources (as the lab builds
# targets and patch objects, then stripped, split and cut), a few small
# Debian files nobody here wrote (debug files from libc6-dbg, /usr/bin/true),
# the bundled scenarios and policies, and packages packed by the build's
# hotpatch. Hand-written seeds (one line each, named after what they show)
# live beside them and are not touched.
#
#   bash fuzz/make_corpus.sh [BUILD_DIR]   default build/ci (for hotpatch)
#
# Run it after changing a format; commit what it writes. Outputs are kept
# small (the ELF seeds are -Os builds of short sources), because every one is
# replayed by ctest and mutated by the fuzzer.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/ci}
corpus=fuzz/corpus
tmp=$(mktemp -d /tmp/fuzz-corpus.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# --- ELF files ---------------------------------------------------------------
elf=$corpus/elf
mkdir -p "$elf"
rm -f "$elf"/gen-*
cc=(gcc -Os -g -fno-asynchronous-unwind-tables)
"${cc[@]}" -Iscenarios/common -o "$elf/gen-kvd" scenarios/kv-parse-fix/kvd.c -pthread
"${cc[@]}" -fPIC -shared -fno-stack-protector -o "$elf/gen-parse_fix.so" \
  scenarios/kv-parse-fix/parse_fix.c
"${cc[@]}" -c -o "$elf/gen-parse_fix.o" scenarios/kv-parse-fix/parse_fix.c
"${cc[@]}" -no-pie -fno-pie -o "$elf/gen-elf_fixture-nopie" \
  tests/base/elf_fixtures/elf_fixture.c -lz
objcopy --only-keep-debug "$elf/gen-kvd" "$elf/gen-kvd.debug"
strip --strip-all -o "$elf/gen-kvd.stripped" "$elf/gen-kvd"
objcopy --compress-debug-sections=zlib "$elf/gen-parse_fix.so" "$elf/gen-parse_fix.zdebug.so"
# No section headers at all: dynamic data and the build-id only through program headers.
python3 - "$elf/gen-kvd.stripped" "$elf/gen-kvd.noshdr" <<'PY'
import struct, sys
data = bytearray(open(sys.argv[1], 'rb').read())
shoff = struct.unpack_from('<Q', data, 0x28)[0]
del data[shoff:]
struct.pack_into('<Q', data, 0x28, 0)           # e_shoff
struct.pack_into('<HH', data, 0x3c, 0, 0)       # e_shnum, e_shstrndx
open(sys.argv[2], 'wb').write(data)
PY
# Debian's own: a stripped program, and the two smallest debug files of libc6-dbg.
cp /usr/bin/true "$elf/gen-debian-true"
if [ -d /usr/lib/debug/.build-id ]; then
  find /usr/lib/debug/.build-id -name '*.debug' -type f -printf '%s %p\n' | sort -n | head -n 2 |
    while read -r _ f; do cp "$f" "$elf/gen-debian-$(basename "$f")"; done
fi

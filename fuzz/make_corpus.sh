#!/usr/bin/env bash
# Regenerates the seed files of fuzz/corpus/ that are made from other files
# (named gen-*): ELF files built from the repository's own sources as the lab
# builds targets and patch objects, then stripped, split and cut; small Debian
# files nobody here wrote (debug files of libc6-dbg, /usr/bin/true, C header
# prototypes); packages, states and journals recorded from real hotpatch runs;
# the bundled scenarios, policy and image recipes. Hand-written seeds (hand-*,
# and files named after what they show) live beside them and are not touched.
#
#   bash fuzz/make_corpus.sh [PART...]   PART: agent elf dwarf hotpatch lines sig yaml (default: all)
#   FUZZ_BUILD=build/ci                  the build whose hotpatch and agent record (parts hotpatch, agent)
#   AGENT_LOG=out/.../agent.log          a lab run's channel log to cut seeds from (part agent;
#                                        without it only the host recording is made)
#
# Run it after changing a format; commit what it writes. The recorded parts
# (hotpatch, lines) differ on every run (fresh keys, addresses, clocks), so
# regenerate them only when their format changed. Outputs are kept small (-Os builds of short sources), because
# every one is replayed by ctest and mutated by the fuzzer.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${FUZZ_BUILD:-build/ci}
corpus=fuzz/corpus
tmp=$(mktemp -d /tmp/fuzz-corpus.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cc=(gcc -Os -g -fno-asynchronous-unwind-tables)

# The two smallest debug files of libc6-dbg whose DWARF describes a few functions.
debian_debug_files() {
  [ -d /usr/lib/debug/.build-id ] || return 0
  find /usr/lib/debug/.build-id -name '*.debug' -type f -size -16k -printf '%s %p\n' | sort -n |
    while read -r _ f; do
      n=$(readelf --debug-dump=info "$f" 2>/dev/null | grep -c DW_TAG_subprogram || true)
      if [ "$n" -ge 4 ]; then echo "$f"; fi
    done | head -n 2
}

# --- ELF files ---------------------------------------------------------------
part_elf() {
elf=$corpus/elf
mkdir -p "$elf"
rm -f "$elf"/gen-*
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
# Debian's own: a stripped program, and two small debug files of libc6-dbg.
cp /usr/bin/true "$elf/gen-debian-true"
for f in $(debian_debug_files); do cp "$f" "$elf/gen-debian-$(basename "$f")"; done
}

# --- ELF files with DWARF, and the functions to derive -----------------------
# Each seed is "NAME,NAME...\x7fELF...": the names the harness looks up, then the image.
part_dwarf() {
mkdir -p "$corpus/dwarf"
rm -f "$corpus"/dwarf/gen-*
seed() {  # seed OUT NAMES ELF
  { printf '%s' "$2"; cat "$3"; } >"$corpus/dwarf/gen-$1"
}
"${cc[@]}" -Iscenarios/common -o "$tmp/kvd" scenarios/kv-parse-fix/kvd.c -pthread
"${cc[@]}" -fPIC -shared -o "$tmp/parse_fix.so" scenarios/kv-parse-fix/parse_fix.c
"${cc[@]}" -fPIC -shared -o "$tmp/target.so" tests/emulator/fixtures/target.c
objcopy --only-keep-debug "$tmp/kvd" "$tmp/kvd.debug"
objcopy --compress-debug-sections=zlib "$tmp/parse_fix.so" "$tmp/parse_fix.zdebug.so"
seed kvd "main,serve,bucket_of,client" "$tmp/kvd"
seed kvd.debug "serve,main" "$tmp/kvd.debug"
seed parse_fix.zdebug.so "parse_request" "$tmp/parse_fix.zdebug.so"
seed target-1.so "parse_number,table_get,dup_upper,scribble,classify,first_char,sum_loop,wait_ready" \
  "$tmp/target.so"
seed target-2.so "set_scale,random_word,relro_read,uses_getenv,stamp_const,safe_div" \
  "$tmp/target.so"
local n=0
for f in $(debian_debug_files); do
  n=$((n + 1))
  names=$(readelf --debug-dump=info "$f" 2>/dev/null | grep -A4 DW_TAG_subprogram |
    sed -n 's/.*DW_AT_name *:.*: \([A-Za-z_][A-Za-z0-9_]*\)$/\1/p' | head -n 8 | paste -sd,)
  seed "debian-$n.debug" "$names" "$f"
done
}

# --- Packages, state and journals, recorded from real hotpatch runs ----------
part_hotpatch() {
# A patch of the patch core's test target is packed three ways (signed,
# unsigned with --depends, several functions with --replaces all), applied to
# the running target, and interrupted at a fault point (HOTPATCH_FAULT) so that
# the journal it leaves can be kept; `hotpatch recover` then finishes it.
cmake --build "$build" --target hotpatch pc_target_pie >/dev/null
hotpatch=$build/tools/hotpatch/hotpatch
target=$build/tests/patchcore/pc_target_pie
mkdir -p "$corpus/package" "$corpus/state" "$corpus/journal"
rm -f "$corpus"/package/gen-* "$corpus"/state/gen-* "$corpus"/journal/gen-*
gcc -Os -fPIC -shared -s -Wl,-z,noseparate-code -o "$tmp/patch.so" \
  tests/patchcore/patches/patch_compute.c
"$hotpatch" keygen --out "$tmp/keys" >/dev/null
refs=(--ref private_helper --ref private_calls)
pack=("$hotpatch" pack --target "$target" --object "$tmp/patch.so")
"${pack[@]}" --id fix-1 --seq 1 --func compute=compute_v1 "${refs[@]}" \
  --key "$tmp/keys/patch.key" -o "$corpus/package/gen-signed.hpk"
"${pack[@]}" --id fix-2 --seq 2 --func compute=compute_v2 "${refs[@]}" --depends fix-1 \
  -o "$corpus/package/gen-unsigned.hpk" 2>/dev/null
"${pack[@]}" --id fix-3 --seq 3 --func compute=compute_v3 --func slow_path=slow_path_v1 \
  "${refs[@]}" --replaces all --key "$tmp/keys/patch.key" -o "$tmp/all.hpk"
cp "$tmp/all.hpk" "$corpus/package/gen-replaces-all.hpk"
# The manifest alone (the harness reads input without the magic as a manifest).
python3 - "$corpus/package/gen-signed.hpk" "$corpus/package/gen-manifest.json" <<'PY'
import struct, sys
data = open(sys.argv[1], 'rb').read()
size = struct.unpack_from('<I', data, 16)[0]
open(sys.argv[2], 'wb').write(data[20:20 + size])
PY

export HOTPATCH_STATE_DIR=$tmp/state
"$target" >/dev/null &
target_pid=$!
sleep 0.3
state_dir() { echo "$HOTPATCH_STATE_DIR/$target_pid-"*; }
hp() { "$hotpatch" "$@" >/dev/null 2>&1; }
hp apply --pid "$target_pid" --pubkey "$tmp/keys/patch.pub" "$corpus/package/gen-signed.hpk"
hp apply --pid "$target_pid" --allow-unsigned "$corpus/package/gen-unsigned.hpk"
cp "$(state_dir)/state.json" "$corpus/state/gen-two-patches.json"
# The fault point kills hotpatch with SIGKILL (bash reports it on stderr).
{ HOTPATCH_FAULT=after-write-1 hp apply --pid "$target_pid" --pubkey "$tmp/keys/patch.pub" \
  "$tmp/all.hpk" || true; } 2>/dev/null
cp "$(state_dir)/journal.json" "$corpus/journal/gen-apply-interrupted.json"
hp recover --pid "$target_pid"
hp apply --pid "$target_pid" --pubkey "$tmp/keys/patch.pub" "$tmp/all.hpk"
cp "$(state_dir)/state.json" "$corpus/state/gen-three-patches.json"
{ HOTPATCH_FAULT=after-write-1 hp revert --pid "$target_pid" fix-3 || true; } 2>/dev/null
cp "$(state_dir)/journal.json" "$corpus/journal/gen-revert-interrupted.json"
hp recover --pid "$target_pid"
kill "$target_pid"
wait "$target_pid" 2>/dev/null || true
}

# --- Lines the lab reads from machines it does not trust ---------------------
# A real scenario target's labstats line, and a real QMP session with QEMU
# (greeting, replies, an error, events); the guest console log seed
# (kernel_log/recorded-*) was kept from a lab run and is not regenerated here.
part_lines() {
mkdir -p "$corpus/labstats" "$corpus/qmp"
rm -f "$corpus"/labstats/gen-* "$corpus"/qmp/gen-*
"${cc[@]}" -Iscenarios/common -o "$tmp/kvd" scenarios/kv-parse-fix/kvd.c -pthread
PATCHLAB_STATS=$tmp/stats "$tmp/kvd" --threads 2 --duration-ms 300 >"$tmp/kvd.out"
cp "$tmp/stats" "$corpus/labstats/gen-kvd-stats"
printf '%s\n' '{"execute":"qmp_capabilities","id":1}' '{"execute":"query-status","id":2}' \
  '{"execute":"query-version","id":3}' '{"execute":"no-such-command","id":4}' \
  '{"execute":"stop","id":5}' '{"execute":"query-status","id":6}' '{"execute":"cont","id":7}' \
  '{"execute":"quit","id":8}' |
  timeout 30 qemu-system-x86_64 -machine none -display none -nodefaults -qmp stdio \
    >"$corpus/qmp/gen-qemu-session"
}

# --- Agent channel lines -----------------------------------------------------
# Both directions of the lab's channel (fuzz/agent_lines.py): the real agent
# driven on this host through every op, and a VM run's agent.log when given.
part_agent() {
mkdir -p "$corpus/agent_request" "$corpus/agent_reply"
rm -f "$corpus"/agent_request/gen-* "$corpus"/agent_reply/gen-*
python3 fuzz/agent_lines.py record "$build/harness/patchlab-agent" \
  "$corpus/agent_request" "$corpus/agent_reply"
if [ -n "${AGENT_LOG:-}" ]; then
  python3 fuzz/agent_lines.py split "$AGENT_LOG" "$corpus/agent_request" "$corpus/agent_reply"
fi
}

# --- Prototypes (--sig) ------------------------------------------------------
# The checker test fixture's real prototypes, and one-line prototypes from
# Debian's C headers (most are refused: __THROW, attributes, void *).
part_sig() {
mkdir -p "$corpus/sig"
rm -f "$corpus"/sig/gen-*
n=0
while IFS= read -r proto; do
  n=$((n + 1))
  printf '%s' "$proto" >"$corpus/sig/gen-fixture-$n"
done < <(sed -n 's/^API \(.*)\) *{.*$/\1/p' tests/emulator/fixtures/target.c)
n=0
while IFS= read -r proto; do
  n=$((n + 1))
  printf '%s' "$proto" >"$corpus/sig/gen-debian-header-$n"
done < <(grep -hE '^extern [a-z_ ]+\**[a-z_]+ \(.*\);?$' /usr/include/string.h /usr/include/zlib.h \
  /usr/include/unistd.h | head -n 12)
}

# --- YAML documents ----------------------------------------------------------
# The bundled scenarios, the built-in policy and the image recipes as shipped.
part_yaml() {
mkdir -p "$corpus/scenario" "$corpus/policy" "$corpus/images"
rm -f "$corpus"/scenario/gen-* "$corpus"/policy/gen-* "$corpus"/images/gen-*
for f in scenarios/*/scenario.yaml; do
  cp "$f" "$corpus/scenario/gen-$(basename "$(dirname "$f")").yaml"
done
cp metrics/policy-default.yaml "$corpus/policy/gen-policy-default.yaml"
cp vm-images/images.yaml "$corpus/images/gen-images.yaml"
}

parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(agent elf dwarf hotpatch lines sig yaml)
for part in "${parts[@]}"; do
  case "$part" in
    agent | elf | dwarf | hotpatch | lines | sig | yaml) "part_$part" ;;
    *)
      echo "usage: fuzz/make_corpus.sh [agent|elf|dwarf|hotpatch|lines|sig|yaml]..." >&2
      exit 2
      ;;
  esac
done

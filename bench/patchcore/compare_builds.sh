#!/bin/bash
# Two hotpatch builds A/B, interleaved in one run on the same processes:
#   compare_builds.sh pause OLD_HOTPATCH NEW_HOTPATCH [ROUNDS]
#     `apply --pid` + `revert --pid` of patch_compute's compute on one
#     16-thread pc_target_pie; pause_us median and p90 per build, and how
#     many applies retried (a thread was inside the function).
#   compare_builds.sh system OLD_HOTPATCH NEW_HOTPATCH N [ROUNDS]
#     `apply --system` + `revert --system` over N idle pc_zlib_idle
#     processes on the system's libz; processes per second (from wall_us),
#     median per build.
# Run from a build folder (build/ci). The machine is shared: every command
# is narrowed to this script's own children, and rounds alternate A and B.
set -euo pipefail
mode=$1 old=$2 new=$3
here=$(pwd)
work=$(mktemp -d /tmp/compare_builds-XXXXXX)
export HOTPATCH_STATE_DIR=$work/state
holder_pid=
cleanup() {
  [ -n "$holder_pid" ] && kill -- -"$holder_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

median_p90() {  # numbers on stdin -> "median p90 n"
  sort -n | awk '{v[NR]=$1} END{print v[int((NR+1)/2)], v[int(NR*0.9+0.5)], NR}'
}

start_holder() {  # COUNT ARGV...: a process group holding COUNT copies
  local count=$1; shift
  setsid bash -c "for i in \$(seq $count); do $* >/dev/null 2>&1 & done; wait" &
  holder_pid=$!
  sleep 1
  while [ "$(pgrep -P "$holder_pid" | wc -l)" -lt "$count" ]; do sleep 0.2; done
  sleep 2  # the loaders are done
}

if [ "$mode" = pause ]; then
  rounds=${4:-15}
  "$new" pack --target tests/patchcore/pc_target_pie --object tests/patchcore/libpc_patch_compute.so \
    --id c1 --seq 1 --func compute=compute_v1 --ref private_helper --ref private_calls \
    -o "$work/c1.hpk" 2>/dev/null
  start_holder 1 "$here/tests/patchcore/pc_target_pie --threads 16"
  pid=$(pgrep -P "$holder_pid")
  for r in $(seq "$rounds"); do
    for which in old new; do
      bin=${!which}
      "$bin" apply --pid "$pid" --allow-unsigned --json "$work/c1.hpk" 2>/dev/null |
        python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["pause_us"], j["retries"])' \
          >>"$work/$which"
      "$bin" revert --pid "$pid" c1 >/dev/null 2>&1
    done
  done
  for which in old new; do
    echo "$which pause_us median/p90/n: $(cut -d' ' -f1 "$work/$which" | median_p90)" \
      "retried: $(awk '$2>0' "$work/$which" | wc -l)"
  done
else
  n=$4 rounds=${5:-5}
  "$new" pack --target /lib/x86_64-linux-gnu/libz.so.1 --object tests/patchcore/libpc_patch_zlib.so \
    --id z1 --seq 1 --func adler32=adler32_v1 -o "$work/z1.hpk" 2>/dev/null
  start_holder "$n" "$here/tests/patchcore/pc_zlib_idle --period 1000"
  for r in $(seq "$rounds"); do
    for which in old new; do
      bin=${!which}
      "$bin" apply --system --descendants-of "$holder_pid" --allow-unsigned --json "$work/z1.hpk" \
        2>/dev/null | python3 -c "import json,sys; j=json.load(sys.stdin); \
assert j['applied']==$n, j['applied']; print($n/(j['wall_us']/1e6))" >>"$work/$which"
      "$bin" revert --system --descendants-of "$holder_pid" z1 >/dev/null 2>&1
    done
  done
  for which in old new; do
    echo "$which per_s median/p90/n (N=$n): $(median_p90 <"$work/$which")"
  done
  awk 'NR==FNR{o[FNR]=$1; next} {print $1/o[FNR]}' "$work/old" "$work/new" | sort -n |
    awk '{v[NR]=$1} END{print "new/old ratio per round, median:", v[int((NR+1)/2)]}'
fi
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"

#!/usr/bin/env bash
# BM_Lab_SingleCell: one full single-cell scenario (kv-parse-fix on one image and
# CPU model, under TCG) through the real `patchlab run`, beside a bare QEMU boot of
# the same image to the point where the kernel starts /init, measured in the same
# run. Reports medians and the ratio cell / bare boot. Goal: the cell <= 20 s.
#
#   bench/lab/single_cell.sh [BUILD_DIR] [REPEATS]
#     BUILD_DIR  a configured and built tree (default build/default)
#     REPEATS    runs of each (default 3)
# Needs root, qemu-system-x86_64 and a working hotpatch; builds the image if needed.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build/default}
repeats=${2:-3}
image=${PATCHLAB_BENCH_IMAGE:-debian12-cloud}
cpu=${PATCHLAB_BENCH_CPU:-qemu64}
patchlab=$build/tools/patchlab/patchlab
work=$(mktemp -d /tmp/bench_lab.XXXXXX)
trap 'rm -rf "$work"' EXIT

"$patchlab" images build "$image" >/dev/null
cache=${PATCHLAB_CACHE:-/var/cache/patchlab}
# The newest built image of that name: image.json names its kernel and initramfs.
imgdir=$(ls -dt "$cache/images/$image"-*/ 2>/dev/null | head -n1 || true)
json=${imgdir%/}/image.json
kernel=$(sed -n 's/^ *"kernel": "\(.*\)",*$/\1/p' "$json" 2>/dev/null | head -n1)
initrd=$(sed -n 's/^ *"initrd": "\(.*\)",*$/\1/p' "$json" 2>/dev/null | head -n1)
if [ -z "$kernel" ] || [ -z "$initrd" ]; then
  echo "bench/lab: cannot find the kernel and initramfs of $image in $cache/images/$image-*/image.json" >&2
  exit 2
fi

now() { date +%s.%N; }

# Bare boot: QEMU start to the kernel's "Run /init as init process" line.
bare_boot() {
  local log=$work/bare.log
  rm -f "$log"
  local t0; t0=$(now)
  qemu-system-x86_64 -machine pc -accel tcg -nodefaults -no-reboot -display none -cpu "$cpu" -smp 2 -m 512 \
    -kernel "$kernel" -initrd "$initrd" -append "console=ttyS0 panic=-1 loglevel=7" \
    -serial "file:$log" &
  local qpid=$!
  while ! grep -q "Run /init as init process" "$log" 2>/dev/null; do
    if ! kill -0 "$qpid" 2>/dev/null; then echo "bench/lab: bare QEMU exited early" >&2; return 1; fi
    sleep 0.02
  done
  local t1; t1=$(now)
  kill -9 "$qpid" 2>/dev/null || true
  wait "$qpid" 2>/dev/null || true
  echo "$t1 - $t0" | bc
}

# One full cell: host build, boot, workload, apply/revert windows, verify, DB write.
cell() {
  rm -rf "$work/out" "$work/lab.db"*
  local t0; t0=$(now)
  "$patchlab" run scenarios/kv-parse-fix --images "$image" --cpus "$cpu" --json \
    --db "$work/lab.db" --out "$work/out" > "$work/cell.json"
  local t1; t1=$(now)
  echo "$t1 - $t0" | bc
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

bare=(); cells=()
for _ in $(seq "$repeats"); do
  bare+=("$(bare_boot)")
  cells+=("$(cell)")
done
bare_med=$(printf '%s\n' "${bare[@]}" | median)
cell_med=$(printf '%s\n' "${cells[@]}" | median)
ratio=$(echo "scale=2; $cell_med / $bare_med" | bc)
verdict=$(grep -o '"verdict": *"[a-z-]*"' "$work/cell.json" | head -n1)
printf 'BM_Lab_BareBoot/%s/%s      median %.2f s  (runs: %s)\n' "$image" "$cpu" "$bare_med" "${bare[*]}"
printf 'BM_Lab_SingleCell/kv-parse-fix median %.2f s  (runs: %s)  %s\n' "$cell_med" "${cells[*]}" "$verdict"
printf 'ratio cell / bare boot: %s   goal: cell <= 20 s: %s\n' "$ratio" \
  "$(echo "$cell_med <= 20" | bc | sed 's/1/met/;s/0/NOT met/')"

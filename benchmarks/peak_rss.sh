#!/bin/bash
# Peak memory and wall time of the whole `cloudfill run` process (GNU time) on N grid tiles of a
# pre-cut archive (benchmarks.speed's `--layout grid` tiles: 256² uint16 from the shared Landsat 8
# scene under real cloud-mask shapes), for one or more checkouts, alternately. Checks that every
# checkout restored the same bytes as the first.
#
#   bash benchmarks/peak_rss.sh N REPEATS CHECKOUT [CHECKOUT ...]  [-- extra cloudfill flags]
#
# e.g. `git worktree add /tmp/base 501db13; bash benchmarks/peak_rss.sh 512 2 /tmp/base "$PWD"`.
# Each CHECKOUT runs with this tree's .venv (PYTHONPATH puts its packages first).
set -u
here="$(cd "$(dirname "$0")/.." && pwd)"
n="$1"; repeats="$2"; shift 2
roots=(); while [ $# -gt 0 ] && [ "$1" != "--" ]; do roots+=("$(cd "$1" && pwd)"); shift; done
[ $# -gt 0 ] && shift
py="$here/.venv/bin/python"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$here" && "$py" -c "
import sys
from benchmarks import common
from benchmarks.speed import base
common.write_tiles(base.grid_tiles(int(sys.argv[1]))[0], sys.argv[2])" "$n" "$work/tiles" 2>/dev/null) || exit 1
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $n grid tiles; load $(cut -d' ' -f1-3 /proc/loadavg)"
for rep in $(seq "$repeats"); do
  for i in "${!roots[@]}"; do
    root="${roots[$i]}"
    out="$work/out$i"; rm -rf "$out"
    (cd "$work" && PYTHONPATH="$root" /usr/bin/time -f "%e %P %M" -o "$work/time" \
      "$py" -c "import sys; from pipeline import cli; sys.exit(cli.main(sys.argv[1:]))" run \
      --images "$work/tiles/images/*.tif" --masks "$work/tiles/masks/{stem}.png" --output "$out" \
      --config landsat8_l1 --dilate 0 --no-report --quiet --runner DirectRunner "$@" > "$work/log" 2>&1)
    rc=$?
    read -r wall cpu rss < "$work/time"
    same="-"
    if [ "$i" -gt 0 ]; then
      same=$(cmp -s <(cd "$work/out0/restored" && cat $(ls)) <(cd "$out/restored" && cat $(ls)) && echo same || echo DIFFERENT)
    fi
    printf '%s %-40s rc=%s wall %7.1f s  cpu %5s  peak %6d MiB  restored %4d  bytes vs first: %s\n' \
      "$rep" "$root ($(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'))" "$rc" "$wall" "$cpu" \
      "$((rss / 1024))" "$(ls "$out/restored" | wc -l)" "$same"
  done
done
echo "# load at the end $(cut -d' ' -f1-3 /proc/loadavg)"

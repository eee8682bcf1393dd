#!/bin/bash
# Wall time of the whole `cloudfill run` process on the bundled sample (7 Landsat 8 tiles): what a
# user waits for, imports and launch checks included (benchmarks.speed times from run() on).
#
#   bash benchmarks/wall_sample.sh [CHECKOUT] [REPEATS] [CONFIGS]
#
# CHECKOUT: the tree whose pipeline runs (default: this one; e.g. `git archive REV | tar -x -C /tmp/base`),
# with this tree's .venv. CONFIGS: mode:backend, space-separated.
set -u
here="$(cd "$(dirname "$0")/.." && pwd)"
root="${1:-$here}"
repeats="${2:-3}"
configs="${3:-in_memory:native in_memory:tflite multi_processing:native multi_processing:tflite}"
py="$here/.venv/bin/python"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; checkout $root ($(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo archive)); load $(cut -d' ' -f1-3 /proc/loadavg)"
cd "$root"
for rep in $(seq "$repeats"); do
  for cfg in $configs; do
    mode=${cfg%%:*}; backend=${cfg##*:}
    extra=(); [ "$mode" = multi_processing ] && extra=(--direct_num_workers=2)
    start=$(date +%s.%N)
    "$py" -c "import sys; from pipeline import cli; sys.exit(cli.main(sys.argv[1:]))" run \
      --images "sample/landsat8/images/*.tif" --masks "sample/landsat8/masks/{stem}.png" --output "$out/o" \
      --overwrite --no-report --quiet --backend "$backend" --runner DirectRunner \
      --direct_running_mode="$mode" "${extra[@]}" > "$out/log" 2>&1
    rc=$?
    end=$(date +%s.%N)
    printf '%s %-16s %-6s rc=%s %6.2f s\n' "$rep" "$mode" "$backend" "$rc" "$(echo "$end - $start" | bc)"
  done
done
echo "# load at the end $(cut -d' ' -f1-3 /proc/loadavg)"

#!/bin/bash
# The whole `cloudfill run` process (in-process DirectRunner, GNU time) on N grid tiles of a pre-cut
# archive, once per SETTING, in the order given (repeat a setting to alternate), with one knob of
# the in-process runner set from outside the code; prints wall, CPU share, peak and a checksum of
# the restored files (a knob that only moves work around must not change it).
#
#   bash benchmarks/knobs.sh N KNOB SETTING [SETTING ...]
#
# KNOB: ahead      transforms.pooled.AHEAD, elements in flight per pooled step beyond its threads
#       nice       the niceness of the pooled steps' threads (0: as the process)
#       tf         TensorFlow's threads as INTRA/INTER (default: TensorFlow's own)
#       split      on: TensorFlow on 1 intra-op thread, a batch's model calls of 8 windows on two
#                  threads at once (what a multi-process run's two workers do); off: as shipped
# e.g. `bash benchmarks/knobs.sh 256 ahead 2 18 2 18`.
set -u
here="$(cd "$(dirname "$0")/.." && pwd)"
n="$1"; knob="$2"; shift 2
py="$here/.venv/bin/python"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$here" && "$py" -c "
import sys
from benchmarks import common
from benchmarks.speed import base
common.write_tiles(base.grid_tiles(int(sys.argv[1]))[0], sys.argv[2])" "$n" "$work/tiles" 2>/dev/null) || exit 1
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $n grid tiles; knob $knob; $(git -C "$here" rev-parse --short HEAD); load $(cut -d' ' -f1-3 /proc/loadavg)"
for setting in "$@"; do
  rm -rf "$work/out"
  (cd "$work" && PYTHONPATH="$here" /usr/bin/time -f "%e %P %M" -o "$work/time" "$py" -c "
import os, sys, threading
knob, setting = sys.argv[1], sys.argv[2]
if knob == 'ahead':
    import transforms.pooled as pooled
    pooled.AHEAD = int(setting)
elif knob == 'nice' and int(setting):
    import concurrent.futures as cf
    import transforms.pooled as pooled
    class Niced(cf.ThreadPoolExecutor):
        def __init__(self, n, thread_name_prefix=''):
            super().__init__(n, thread_name_prefix=thread_name_prefix,
                             initializer=lambda: os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), int(setting)))
    pooled.ThreadPoolExecutor = Niced
elif knob == 'tf' and setting != 'default':
    import tensorflow as tf
    intra, inter = setting.split('/')
    tf.config.threading.set_intra_op_parallelism_threads(int(intra))
    tf.config.threading.set_inter_op_parallelism_threads(int(inter))
elif knob == 'split' and setting == 'on':
    import tensorflow as tf
    import numpy as np
    from concurrent.futures import ThreadPoolExecutor
    from model_loader import native
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    calls = ThreadPoolExecutor(2)
    def split_call(self, images, masks, **extra):
        feed, n = native.model_feed(self.input_names, images, masks, extra), native.CALL_BATCH
        def one(i):
            out = self._fn(**{k: tf.constant(v[i:i + n], tf.float32) for k, v in feed.items()})
            return out[native.OUTPUT_RESTORED].numpy()
        outs = list(calls.map(one, range(0, len(images), n)))
        return outs[0] if len(outs) == 1 else np.concatenate(outs)
    native.LoadedModel.__call__ = split_call
from pipeline import cli
sys.exit(cli.main(sys.argv[3:]))" "$knob" "$setting" run \
      --images "$work/tiles/images/*.tif" --masks "$work/tiles/masks/{stem}.png" --output "$work/out" \
      --config landsat8_l1 --dilate 0 --no-report --quiet --runner DirectRunner --direct_running_mode=in_memory > "$work/log" 2>&1)
  rc=$?
  read -r wall cpu rss < "$work/time"
  printf '%s=%-8s rc=%s wall %6.1f s  cpu %5s  peak %6d MiB  restored %4d  md5 %s  load %s\n' "$knob" "$setting" "$rc" \
    "$wall" "$cpu" "$((rss / 1024))" "$(ls "$work/out/restored" | wc -l)" \
    "$(cd "$work/out/restored" && cat $(ls) | md5sum | cut -c1-8)" "$(cut -d' ' -f1 /proc/loadavg)"
done

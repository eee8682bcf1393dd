"""What a 256² tile's push-pull context costs, with and without filling only the holes' box.

:func:`transforms.context.push_pull` smooths its fine levels only around the
bounding box of the pixels it fills (:func:`transforms.context.fill_box`).
This times it on the 64 grid tiles of :func:`benchmarks.speed.base.grid_tiles`
(real cloud masks) with that narrowing switched off (the box made the whole
tile) and on, alternately, three times in one process, and checks that both
give the same bits. Prints CPU ms a tile::

  python -m benchmarks.context_cost
"""

from __future__ import annotations

import sys
import time

import numpy as np

from benchmarks import common
from benchmarks.speed import base
from transforms import context


def main() -> int:
  tiles, source = base.grid_tiles(64)
  cases = [(t["image"].astype(np.float32) / 65535, (~(np.asarray(t["mask"]) > 0)).astype(np.float32)) for t in tiles]
  narrowed = context.fill_box
  whole = lambda w0: (0, w0.shape[0], 0, w0.shape[1])  # noqa: E731

  def run(box):
    context.fill_box = box
    try:
      t0 = time.process_time()
      out = [context.push_pull(v, k) for v, k in cases]
      return 1000 * (time.process_time() - t0) / len(cases), out
    finally:
      context.fill_box = narrowed

  m = common.machine()
  print(f"{m['cpu_model']}, {m['cpus_usable']} usable CPUs; {source}")
  for _ in range(3):
    (a, fa), (b, fb) = run(whole), run(narrowed)
    same = all(np.array_equal(x, y) for x, y in zip(fa, fb))
    print(f"push-pull of a 256² tile: whole {a:.2f} ms CPU, holes' box {b:.2f} ms CPU; same bits: {same}")
  return 0


if __name__ == "__main__":
  sys.exit(main())

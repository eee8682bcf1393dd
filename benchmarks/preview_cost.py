"""What a tile's quicklook costs (``transforms.preview.write_tile_preview``).

64 grid tiles of :func:`benchmarks.speed.base.grid_tiles` (256², real cloud
masks), each decoded and given its context, then its quicklook written three
times; prints the median wall and the mean CPU ms per write, and which
``transforms/preview.py`` was timed. To compare another checkout, run this
file with that checkout first on the path, one after the other::

  python -m benchmarks.preview_cost
  CLOUDFILL_SHARED_DATA=$PWD/../shared/data PYTHONPATH=/tmp/base python benchmarks/preview_cost.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

from benchmarks import common
from benchmarks.speed import base
from transforms import preview
from transforms.decode import DecodeSpec, decode_pair
from transforms.masks import MaskSpec
from transforms.match import mask_path_for
from transforms.records import TilePair
from transforms.window import WindowSpec, tile_context


def main(argv=None) -> int:
  del argv
  work = tempfile.mkdtemp(prefix="cloudfill-preview-")
  tiles, source = base.grid_tiles(64)
  images, masks = common.write_tiles(tiles, os.path.join(work, "tiles"))
  spec = DecodeSpec(mask=MaskSpec(source="file"), model_bands=3)
  wspec = WindowSpec(size=256, overlap=32, value_range=base.VALUE_RANGE)
  prepared = []
  for t in tiles:
    path = os.path.join(os.path.dirname(images), t["name"] + ".tif")
    tile = decode_pair(TilePair(path, t["name"], mask_path_for(path, masks)), spec)
    prepared.append((tile, tile_context(tile, wspec)[0]))
  wall, cpu = [], []
  for _ in range(3):
    for tile, fill in prepared:
      t0, c0 = time.perf_counter(), time.process_time()
      preview.write_tile_preview(work, tile, fill, base.VALUE_RANGE)
      wall.append(time.perf_counter() - t0)
      cpu.append(time.process_time() - c0)
  m = common.machine()
  print(f"{m['cpu_model']}, {m['cpus_usable']} usable CPUs")
  print(f"{preview.__file__}: {source}")
  print(f"quicklook of a 256² tile: median wall {1000 * statistics.median(wall):.2f} ms, "
        f"mean CPU {1000 * statistics.mean(cpu):.2f} ms ({len(wall)} writes), load {os.getloadavg()[0]:.2f}")
  return 0


if __name__ == "__main__":
  sys.exit(main())

"""What finding a tile's neighbours costs as a run grows: a scan of every input against the index.

Before :mod:`transforms.header_index`, each prepared tile sorted every input's
header and tested each one (:func:`transforms.neighbours.neighbour_offset`):
O(inputs) a tile. This times that scan and the index (built once, then one
lookup a tile) on square grids of 256² tiles, checks that both find the same
neighbours, and prints CPU ms a tile::

  python -m benchmarks.neighbour_lookup [--sizes 256,4096,16384,65536]
"""

from __future__ import annotations

import argparse
import sys
import time

from benchmarks import common
from transforms.header_index import HeaderIndex
from transforms.neighbours import TileHeader, within_margin

MARGIN = 512


def grid(n: int) -> list[TileHeader]:
  """``n`` (a square) 256² tiles of 30 m pixels on one UTM grid, row by row."""
  side = int(round(n**0.5))
  return [
      TileHeader(f"/archive/t{r:04d}_{c:04d}.tif", None, "EPSG:32633",
                 (30.0, 0.0, 300000.0 + c * 7680.0, 0.0, -30.0, 5000000.0 - r * 7680.0), 256, 256)
      for r in range(side)
      for c in range(side)
  ]


def neighbours_of(me: TileHeader, others) -> list[str]:
  """The paths a tile's context reads, in order (the scan of extended_context)."""
  return [o.path for o in sorted(others, key=lambda t: t.path) if o.path != me.path and within_margin(me, o, MARGIN)]


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--sizes", default="256,4096,16384,65536", help="Inputs in a run (squares).")
  p.add_argument("--lookups", type=int, default=20, help="Tiles looked up per size.")
  args = p.parse_args(argv)
  m = common.machine()
  print(f"{m['cpu_model']}, {m['cpus_usable']} usable CPUs; load {m['loadavg_start']}; margin {MARGIN} px")
  for n in (int(s) for s in args.sizes.split(",")):
    headers = grid(n)
    step = max(1, len(headers) // args.lookups)
    probe = headers[step // 2::step][:args.lookups]
    t0 = time.process_time()
    scanned = [neighbours_of(me, headers) for me in probe]
    scan_ms = 1000 * (time.process_time() - t0) / len(probe)
    t0 = time.process_time()
    index = HeaderIndex(headers)
    build_ms = 1000 * (time.process_time() - t0)
    t0 = time.process_time()
    found = [neighbours_of(me, index.candidates(me, MARGIN)) for me in probe]
    lookup_ms = 1000 * (time.process_time() - t0) / len(probe)
    same = found == scanned
    print(f"{len(headers):6d} inputs: scan {scan_ms:8.2f} ms a tile; index built in {build_ms:7.1f} ms once, "
          f"then {lookup_ms:6.3f} ms a tile; same neighbours: {same}")
    if not same:
      return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())

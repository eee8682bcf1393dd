"""What threads buy on this machine: the two places cloudfill uses them.

``python -m benchmarks.threads [--tiles 64] [--out benchmarks/results/speed/threads.json]``

1. **Guided fills** (:func:`transforms.regression.guided_fill`, 256² windows
   of a synthetic two-date scene): serially, and on 2 threads through
   :func:`transforms.parallel.ordered_map` (what a streamed guided scene does).
2. **The steps around the model** (decode, tile context, cut; composite,
   encode and write, measure) for 256² tiles cut from the real Landsat 8 scene
   in batches of 16 beside the default SavedModel's batches: the model alone,
   all steps one after the other, and the steps on 1 or 2 extra threads while
   the model runs (what :mod:`transforms.pooled` lets the pipeline do).

Every pair is checked to give equal arrays. Figures print and go to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional, Sequence

import numpy as np

from benchmarks import common
from benchmarks.speed import base
from model_loader import locate, native
from transforms import parallel, regression
from transforms.atomic_write import write_bytes_atomic
from transforms.composite import composite, window_result
from transforms.decode import DecodeSpec, decode_pair
from transforms.masks import MaskSpec
from transforms.match import mask_path_for
from transforms.raster_io import encode_raster
from transforms.records import RestoredTile, TilePair
from transforms.window import WindowSpec, cut, tile_context
from transforms.write import WriteSpec, measure

S = 256


def _guided_case(i: int):
  r = np.random.default_rng(i)
  yy, xx = np.mgrid[0:S, 0:S] / S
  target = np.stack([np.sin(6 * yy + i) * 0.3 + 0.5, np.cos(5 * xx) * 0.3 + 0.5, yy * xx], -1).astype(np.float32)
  target += r.normal(0, 0.02, target.shape).astype(np.float32)
  guide = (target * 0.9 + 0.05 + r.normal(0, 0.02, target.shape)).astype(np.float32)
  valid = np.ones((S, S), np.float32)
  valid[60:200, 40:220] = 0
  guide_valid = np.ones((S, S), np.float32)
  guide_valid[:20] = 0
  return target, valid, guide, guide_valid


def bench_guided(windows: int = 8) -> dict[str, Any]:
  cases = [_guided_case(i) for i in range(windows)]
  fill = lambda c: regression.guided_fill(*c).fill  # noqa: E731
  fill(cases[0])
  out = {}
  for threads in (1, 2):
    t0 = time.perf_counter()
    got = list(parallel.ordered_map(fill, cases, threads))
    out[threads] = (time.perf_counter() - t0) / windows, got
  equal = all(np.array_equal(a, b) for a, b in zip(out[1][1], out[2][1]))
  return {"windows": windows, "s_per_window_1": out[1][0], "s_per_window_2": out[2][0], "equal": equal}


def bench_overlap(n: int, model_dir: str, work: str, reps: int = 2) -> dict[str, Any]:
  tiles, source = base.grid_tiles(n)
  images, masks = common.write_tiles(tiles, os.path.join(work, "tiles"))
  card = base.card(model_dir)
  model = native.LoadedModel(model_dir)
  spec = DecodeSpec(mask=MaskSpec(source="file"), model_bands=card.bands)
  wspec = WindowSpec(size=card.window, overlap=card.overlap, value_range=base.VALUE_RANGE)
  folder, out_dir = os.path.dirname(images), os.path.join(work, "out")
  takes_context = "context" in model.input_names

  def before(t):  # decode, context, cut
    path = os.path.join(folder, t["name"] + ".tif")
    tile = decode_pair(TilePair(path, t["name"], mask_path_for(path, masks)), spec)
    return tile, list(cut(tile, wspec, *tile_context(tile, wspec)))

  def infer(prepared):
    feed = base.stacked([w for _, ws in prepared for w in ws], ("image", "mask") + model.input_names)
    return model(feed.pop("image"), feed.pop("mask"), **feed)

  def after(prepared, restored):  # composite, encode and write, measure
    i = 0
    for tile, ws in prepared:
      results = [window_result(w, r, card.overlap, takes_context) for w, r in zip(ws, restored[i:i + len(ws)])]
      i += len(ws)
      filled = composite(tile.image, tile.mask, results, base.VALUE_RANGE, 0)
      write_bytes_atomic(os.path.join(out_dir, tile.key + ".tif"), encode_raster(filled, tile.profile, {}))
      measure(RestoredTile(tile=tile, restored=filled, windows=len(ws)), WriteSpec(out_dir, model_version="x"))

  batches = [tiles[i:i + 16] for i in range(0, n, 16)]
  infer([before(t) for t in batches[0]])  # warm up
  ready = [[before(t) for t in b] for b in batches]

  def serial():
    for b in batches:
      p = [before(t) for t in b]
      after(p, infer(p))

  def overlapped(threads: int):
    with ThreadPoolExecutor(threads) as ex:
      nxt = [ex.submit(before, t) for t in batches[0]]
      writes = []
      for k in range(len(batches)):
        p = [f.result() for f in nxt]
        if k + 1 < len(batches):
          nxt = [ex.submit(before, t) for t in batches[k + 1]]
        writes.append(ex.submit(after, p, infer(p)))
      for w in writes:
        w.result()

  variants = {
      "model only": lambda: [infer(p) for p in ready],
      "serial": serial,
      "overlap 1 thread": lambda: overlapped(1),
      "overlap 2 threads": lambda: overlapped(2)
  }
  rates: dict[str, list[float]] = {k: [] for k in variants}
  for _ in range(reps):
    for name, fn in variants.items():
      t0 = time.perf_counter()
      fn()
      rates[name].append(round(n / (time.perf_counter() - t0), 2))
      common.log(f"  {name:18s} {rates[name][-1]:6.2f} tiles/s")
  return {"tiles": n, "source": source, "tiles_per_s": rates}


def main(argv: Optional[Sequence[str]] = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
  p.add_argument("--tiles", type=int, default=64)
  p.add_argument("--model", default=None, help="SavedModel (default: the bundled one)")
  p.add_argument("--out", default=os.path.join(common.ROOT, "benchmarks", "results", "speed", "threads.json"))
  args = p.parse_args(argv)
  res: dict[str, Any] = {"machine": common.machine()}
  m = res["machine"]
  common.log(f"machine: {m['cpu_model']}, {m['cpus_usable']} usable CPUs; load average {m['loadavg_start']}")
  res["guided"] = g = bench_guided()
  common.log(f"guided fill, 256² window: {g['s_per_window_1']:.3f} s serial, {g['s_per_window_2']:.3f} s on 2 threads "
             f"(equal: {g['equal']})")
  with tempfile.TemporaryDirectory(prefix="cloudfill-threads-") as work:
    common.log(f"steps around the model, {args.tiles} grid tiles:")
    res["overlap"] = bench_overlap(args.tiles, locate.resolve(args.model), work)
  res["loadavg_end"] = common.loadavg()
  common.log(f"load average at end {res['loadavg_end']}; wrote {common.write_json(args.out, res)}")
  return 0 if g["equal"] else 1


if __name__ == "__main__":
  raise SystemExit(main())

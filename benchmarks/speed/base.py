"""What every speed benchmark shares: constants, timing, the pipeline's own windows."""

from __future__ import annotations

import os
import statistics
import time
from typing import Any, Callable, Optional

import numpy as np

from benchmarks import common
from model_loader import locate
from transforms.records import Tile, TilePair
from transforms.window import WindowSpec, cut, tile_context

ROOT = common.ROOT
DEFAULT_OUT = f"{ROOT}/benchmarks/results/speed"
VALUE_RANGE = (0.0, 65535.0)
GOAL_RATIO = 0.85
RESULT_TAG = "SPEED_RESULT "
PIPELINE_CONFIGS = (("in_memory", "native"), ("in_memory", "tfx"), ("multi_processing", "native"), ("multi_processing",
                                                                                                    "tfx"))


def timeit(fn: Callable[[], Any],
           min_seconds: float = 1.0,
           min_runs: int = 3,
           max_runs: int = 10_000) -> tuple[float, int]:
  """(median seconds per call, calls) over at least ``min_seconds``."""
  times = []
  start = time.perf_counter()
  while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < min_seconds):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return statistics.median(times), len(times)


def card(model_dir: str):
  return locate.read_card(model_dir)


def windows(tiles, window: int, overlap: int):
  """The windows the pipeline cuts from ``tiles`` (model inputs, with each
  tile's context crop as :class:`transforms.window.CutWindows` cuts them)."""
  spec = WindowSpec(size=window, overlap=overlap, value_range=VALUE_RANGE)
  out = []
  for t in tiles:
    tile = Tile(pair=TilePair(t["name"], t["name"], None),
                image=t["image"],
                mask=t["mask"],
                profile={
                    "dtype": "uint16",
                    "nodata": 0
                })
    fill, mapped = tile_context(tile, spec)
    out.extend(cut(tile, spec, fill, mapped))
  return out


def stacked(wins, names) -> dict[str, np.ndarray]:
  """``{input name: [N, S, S, *]}`` of the windows' model inputs (what the native handler stacks)."""
  inputs = [w.model_inputs() for w in wins]
  return {n: np.stack([i[n] for i in inputs]) for n in names if all(n in i for i in inputs)}


def fmt_rate(x: Optional[float]) -> str:
  return "n/a" if x is None else f"{x:7.2f}"


def grid_tiles(n: int,
               size: int = 256,
               seed: int = 0,
               coverage: tuple[float, float] = (0.05, 0.6)) -> tuple[list[dict[str, Any]], str]:
  """``n`` tiles of a pre-cut archive: a non-overlapping grid (row-major, ``ceil(sqrt(n))``
  columns) over the real scene's clear part, mirrored where the grid runs past it, each under a
  real cloud-mask shape; the same dicts as :func:`benchmarks.common.make_tiles`.

  Unlike random crops, a tile's neighbours (and so its neighbour-context work) do not grow with
  ``n``: at most the 24 tiles within two windows, as in a real archive.
  """
  import math  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(seed)
  scene, geo = common._read_tif(common.SCENE)  # pylint: disable=protected-access
  clear = scene[common.SCENE_CLEAN_ROW:]
  cols = math.ceil(math.sqrt(n))
  rows = math.ceil(n / cols)
  big = np.pad(clear, ((0, max(0, rows * size - clear.shape[0])), (0, max(0, cols * size - clear.shape[1])), (0, 0)),
               mode="symmetric")
  masks = common.real_masks()
  t = geo["transform"] * geo["transform"].translation(0, common.SCENE_CLEAN_ROW)
  tiles = []
  for i in range(n):
    r, c = divmod(i, cols)
    for _ in range(20):
      m = common._resize_mask(masks[int(rng.integers(0, len(masks)))], size, rng)  # pylint: disable=protected-access
      if coverage[0] <= m.mean() <= coverage[1]:
        break
    tiles.append({
        "name": f"grid{i:04d}_r{r}_c{c}",
        "mask": m,
        "image": np.ascontiguousarray(big[r * size:(r + 1) * size, c * size:(c + 1) * size]),
        "geo": dict(geo, transform=t * t.translation(c * size, r * size))
    })
  return tiles, (f"{n} tiles {size}x{size} on a non-overlapping {rows}x{cols} grid over "
                 f"{os.path.basename(common.SCENE)} rows {common.SCENE_CLEAN_ROW}- (mirrored past its "
                 f"edge), uint16 B2,B3,B4, under {len(masks)} real cloud-mask shapes, coverage "
                 f"{coverage[0]:.0%}-{coverage[1]:.0%}, seed {seed}")

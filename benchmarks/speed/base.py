"""What every speed benchmark shares: constants, timing, the pipeline's own windows."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Optional

import numpy as np

from benchmarks import common


ROOT = common.ROOT
DEFAULT_OUT = f"{ROOT}/benchmarks/results/speed"
VALUE_RANGE = (0.0, 65535.0)
GOAL_RATIO = 0.85
RESULT_TAG = "SPEED_RESULT "
PIPELINE_CONFIGS = (("in_memory", "native"), ("in_memory", "tfx"),
                    ("multi_processing", "native"), ("multi_processing", "tfx"))


def timeit(fn: Callable[[], Any], min_seconds: float = 1.0, min_runs: int = 3,
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
  from model_loader import locate  # pylint: disable=import-outside-toplevel
  return locate.read_card(model_dir)


def windows(tiles, window: int, overlap: int):
  """The windows the pipeline cuts from ``tiles`` (model inputs, with each
  tile's context crop as :class:`transforms.window.CutWindows` cuts them)."""
  from transforms.records import Tile, TilePair  # pylint: disable=import-outside-toplevel
  from transforms.window import WindowSpec, cut, tile_context  # pylint: disable=import-outside-toplevel
  spec = WindowSpec(size=window, overlap=overlap, value_range=VALUE_RANGE)
  out = []
  for t in tiles:
    tile = Tile(pair=TilePair(t["name"], t["name"], None), image=t["image"], mask=t["mask"],
                profile={"dtype": "uint16", "nodata": 0})
    fill, mapped = tile_context(tile, spec)
    out.extend(cut(tile, spec, fill, mapped))
  return out


def stacked(wins, names) -> dict[str, np.ndarray]:
  """``{input name: [N, S, S, *]}`` of the windows' model inputs (what the native handler stacks)."""
  inputs = [w.model_inputs() for w in wins]
  return {n: np.stack([i[n] for i in inputs]) for n in names if all(n in i for i in inputs)}


def fmt_rate(x: Optional[float]) -> str:
  return "n/a" if x is None else f"{x:7.2f}"

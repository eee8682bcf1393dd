"""Stage 3: cut tiles of any size into model-sized, overlapping windows.

Windows that hold no missing pixel skip the model. Tiles smaller than a window
are padded by reflection. Each window's pixels are scaled to 0…1 with the
tile's value range, which is what the model's ``restore`` signature takes.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Iterator, Optional, Sequence

import apache_beam as beam
import numpy as np

from transforms import counters
from transforms.records import Tile, Window, WindowFailure

# CutWindows' second output: ``(tile_key, WindowFailure)`` when cutting fails.
FAILED_WINDOWS = "failed"

# Default value ranges by dtype, mapped to 0…1 for the model.
DTYPE_RANGES = {
    "uint8": (0.0, 255.0),
    "uint16": (0.0, 65535.0),
    "int16": (-32768.0, 32767.0),
    "float32": (0.0, 1.0),
}


def positions(length: int, size: int, stride: int) -> list[int]:
  """Window starts along one axis: evenly strided, the last flush with the end.

  >>> positions(600, 256, 224)
  [0, 224, 344]
  >>> positions(100, 256, 224)
  [0]
  """
  if length <= size:
    return [0]
  starts = list(range(0, length - size, stride))
  starts.append(length - size)
  return starts


def feather(size: int, overlap: int) -> np.ndarray:
  """``[size, size]`` blending weights: 1 inside, ramping down over ``overlap``.

  Weights stay positive, so a pixel covered by one window takes its value
  unchanged and one covered by several takes their weighted mean.
  """
  i = np.arange(size, dtype=np.float32)
  ramp = np.minimum(1.0, np.minimum(i + 1, size - i) / float(overlap + 1))
  return np.outer(ramp, ramp)


def value_range(dtype: str, override: Optional[Sequence[float]] = None) -> tuple[float, float]:
  if override:
    lo, hi = float(override[0]), float(override[1])
  else:
    lo, hi = DTYPE_RANGES[dtype]
  if hi <= lo:
    raise ValueError(f"value range [{lo}, {hi}] is empty")
  return lo, hi


def to_unit(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
  out = (values.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo)
  return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def from_unit(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
  return values.astype(np.float32) * np.float32(hi - lo) + np.float32(lo)


def _pad_reflect(a: np.ndarray, size: int) -> np.ndarray:
  ph, pw = size - a.shape[0], size - a.shape[1]
  if ph <= 0 and pw <= 0:
    return a
  widths = [(0, max(ph, 0)), (0, max(pw, 0))] + [(0, 0)] * (a.ndim - 2)
  mode = "reflect" if min(a.shape[0], a.shape[1]) > 1 else "edge"
  return np.pad(a, widths, mode=mode)


@dataclasses.dataclass(frozen=True)
class WindowSpec:
  """How windows are cut.

  Attributes:
    size: Window side in pixels (the model card's ``window``).
    overlap: Overlap between neighbours in pixels.
    value_range: ``(lo, hi)`` mapped to 0…1, or None for the dtype's range.
  """

  size: int = 256
  overlap: int = 32
  value_range: Optional[tuple[float, float]] = None

  def __post_init__(self):
    if not 0 <= self.overlap < self.size:
      raise ValueError("overlap must be in [0, size)")


def cut_rows(key: str, mask: np.ndarray, dtype: str, rows: Callable[[int, int], np.ndarray],
             spec: WindowSpec, spill_to: Optional[str] = None) -> Iterator[Window]:
  """Yields the windows with at least one missing pixel, one row of windows at a time.

  Args:
    key: The tile's key.
    mask: ``[H, W]`` bool, True = missing.
    dtype: The tile's dtype (for its value range).
    rows: ``rows(y0, y1)`` returns image rows ``[y0, y1)`` as ``[rows, W, C]``;
      called only for rows of windows that hold a missing pixel.
    spec: How windows are cut.
    spill_to: Set on each window (large scenes, see :mod:`transforms.scenes`).
  """
  h, w = mask.shape
  size, stride = spec.size, spec.size - spec.overlap
  lo, hi = value_range(dtype, spec.value_range)
  for y in positions(h, size, stride):
    if not mask[y:y + size].any():
      continue
    start = time.perf_counter()
    band = rows(y, min(h, y + size))
    for x in positions(w, size, stride):
      m = mask[y:y + size, x:x + size]
      if not m.any():
        continue
      img = to_unit(band[:, x:x + size], lo, hi)
      yield Window(tile_key=key, y=y, x=x, tile_shape=(h, w),
                   image=_pad_reflect(img, size),
                   mask=_pad_reflect(m.astype(np.float32), size)[:, :, None],
                   seconds=time.perf_counter() - start, spill_to=spill_to)
      start = time.perf_counter()


def cut(tile: Tile, spec: WindowSpec) -> Iterator[Window]:
  """Yields the windows of an in-memory ``tile`` that hold a missing pixel."""
  return cut_rows(tile.key, tile.mask, tile.profile["dtype"], lambda y0, y1: tile.image[y0:y1], spec)


class CutWindows(beam.DoFn):
  """:class:`Tile` -> :class:`Window` for every window with holes.

  Large scenes (:class:`transforms.scenes.SceneRef`) are cut by
  :func:`transforms.scenes.cut_scene`, one row of windows at a time.
  """

  def __init__(self, spec: WindowSpec, output_dir: str):
    self._spec = spec
    self._output = output_dir

  def process(self, tile) -> Iterator[Window]:
    if isinstance(tile, Tile):
      windows = cut(tile, self._spec)
    else:
      from transforms import scenes  # pylint: disable=import-outside-toplevel
      windows = scenes.cut_scene(tile, self._spec, self._output)
    try:
      for win in windows:
        counters.inc("windows")
        yield win
    except Exception as e:  # pylint: disable=broad-except
      # E.g. a scene's file changed since it was decoded: that scene fails, not the run.
      yield beam.pvalue.TaggedOutput(FAILED_WINDOWS, (tile.key, WindowFailure(
          y=-1, x=-1, reason=f"{type(e).__name__}: {e}", scene=not isinstance(tile, Tile), stage="window")))

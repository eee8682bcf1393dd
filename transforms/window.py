"""Stage 3: cut tiles of any size into model-sized, overlapping windows.

Windows that hold no missing pixel skip the model. Tiles smaller than a window
are padded by reflection. Each window's pixels are scaled to 0…1 with the
tile's value range, which is what the model's ``restore`` signature takes.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Iterator, Optional, Sequence

import apache_beam as beam
import numpy as np

from transforms import counters
from transforms.records import Tile, Window

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


def cut(tile: Tile, spec: WindowSpec) -> Iterator[Window]:
  """Yields the windows of ``tile`` that hold at least one missing pixel."""
  h, w, _ = tile.image.shape
  lo, hi = value_range(tile.profile["dtype"], spec.value_range)
  stride = spec.size - spec.overlap
  for y in positions(h, spec.size, stride):
    for x in positions(w, spec.size, stride):
      m = tile.mask[y:y + spec.size, x:x + spec.size]
      if not m.any():
        continue
      img = to_unit(tile.image[y:y + spec.size, x:x + spec.size], lo, hi)
      yield Window(tile_key=tile.key, y=y, x=x, tile_shape=(h, w),
                   image=_pad_reflect(img, spec.size),
                   mask=_pad_reflect(m.astype(np.float32), spec.size)[:, :, None])


class CutWindows(beam.DoFn):
  """:class:`Tile` -> :class:`Window` for every window with holes.

  Large scenes (:class:`transforms.scenes.SceneRef`) are cut by
  :func:`transforms.scenes.cut_scene`, one row of windows at a time.
  """

  def __init__(self, spec: WindowSpec, output_dir: str):
    self._spec = spec
    self._output = output_dir

  def process(self, tile) -> Iterator[Window]:
    if not isinstance(tile, Tile):
      from transforms import scenes  # pylint: disable=import-outside-toplevel
      yield from scenes.cut_scene(tile, self._spec, self._output)
      return
    start = time.perf_counter()
    for win in cut(tile, self._spec):
      win.seconds = time.perf_counter() - start
      counters.inc("windows")
      yield win
      start = time.perf_counter()

"""Tiling geometry: where model-sized windows lie, and how they are cut.

Shared by in-memory tiles (:mod:`transforms.window`) and streamed scenes
(:mod:`transforms.scene_context`): window starts along an axis, the
feathered blending weights of overlapping windows (:mod:`transforms.composite`),
reflection padding, and :func:`cut_rows`, which cuts one row of windows at a
time from any source of image rows.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Iterator, Optional

import numpy as np

from model_loader.contract import ModelCard
from transforms.records import Window
from transforms.scaling import to_unit, value_range


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


def pad_reflect(a: np.ndarray, size: int) -> np.ndarray:
  """``a`` (``[h, w, …]``) padded at its bottom and right to ``[size, size, …]``
  by reflection (edge replication for a one-pixel-wide array)."""
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

  size: int = ModelCard.window  # The model card's defaults: one home.
  overlap: int = ModelCard.overlap
  value_range: Optional[tuple[float, float]] = None

  def __post_init__(self):
    if not 0 <= self.overlap < self.size:
      raise ValueError("overlap must be in [0, size)")


# ``context(y, x, image, known)`` -> the window's extra inputs (``context``,
# ``guide``, ``guide_mask``), given its padded ``[S, S, C]`` 0…1 image and
# ``[S, S]`` float32 known-ground weights.
ContextFn = Callable[[int, int, np.ndarray, np.ndarray], dict]


def cut_rows(key: str,
             mask: np.ndarray,
             dtype: str,
             rows: Callable[[int, int], np.ndarray],
             spec: WindowSpec,
             spill_to: Optional[str] = None,
             known: Optional[np.ndarray] = None,
             context: Optional[ContextFn] = None) -> Iterator[Window]:
  """Yields the windows with at least one missing pixel, one row of windows at a time.

  Args:
    key: The tile's key.
    mask: ``[H, W]`` bool, True = to fill.
    dtype: The tile's dtype (for its value range).
    rows: ``rows(y0, y1)`` returns image rows ``[y0, y1)`` as ``[rows, W, C]``;
      called only for rows of windows that hold a missing pixel.
    spec: How windows are cut.
    spill_to: Set on each window (large scenes, see :mod:`transforms.scenes`).
    known: ``[H, W]`` bool known ground (default ``~mask``); where it is
      False the window's ``unknown`` is 1 (no-data is never read as known).
    context: Computes each window's ``context``/``guide``/``guide_mask``.
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
      img = pad_reflect(to_unit(band[:, x:x + size], lo, hi), size)
      unknown = None
      extras: dict = {}
      if known is not None or context is not None:
        k = ~m if known is None else known[y:y + size, x:x + size]
        kp = pad_reflect(k.astype(np.float32), size)
        unknown = (1.0 - kp)[:, :, None]
        if context is not None:
          extras = context(y, x, img, kp)
      mask_w = pad_reflect(m.astype(np.float32), size)[:, :, None]
      if unknown is not None and np.array_equal(unknown, mask_w):
        unknown = None  # No no-data here: the mask says it (a window less to carry).
      yield Window(tile_key=key,
                   y=y,
                   x=x,
                   tile_shape=(h, w),
                   image=img,
                   mask=mask_w,
                   seconds=time.perf_counter() - start,
                   spill_to=spill_to,
                   unknown=unknown,
                   **extras)
      start = time.perf_counter()

"""Stage 3: cut tiles of any size into model-sized, overlapping windows.

Windows that hold no missing pixel skip the model. Tiles smaller than a window
are padded by reflection. Each window's pixels are scaled to 0…1 with the
tile's value range, which is what the model's ``restore`` signature takes.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from typing import Callable, Iterator, Optional, Sequence

import apache_beam as beam
import numpy as np

from transforms import context as ctx
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


# ``context(y, x, image, known)`` -> the window's extra inputs (``context``,
# ``guide``, ``guide_mask``), given its padded ``[S, S, C]`` 0…1 image and
# ``[S, S]`` float32 known-ground weights.
ContextFn = Callable[[int, int, np.ndarray, np.ndarray], dict]


def cut_rows(key: str, mask: np.ndarray, dtype: str, rows: Callable[[int, int], np.ndarray],
             spec: WindowSpec, spill_to: Optional[str] = None, known: Optional[np.ndarray] = None,
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
      img = _pad_reflect(to_unit(band[:, x:x + size], lo, hi), size)
      unknown = None
      extras: dict = {}
      if known is not None or context is not None:
        k = ~m if known is None else known[y:y + size, x:x + size]
        kp = _pad_reflect(k.astype(np.float32), size)
        unknown = (1.0 - kp)[:, :, None]
        if context is not None:
          extras = context(y, x, img, kp)
      mask_w = _pad_reflect(m.astype(np.float32), size)[:, :, None]
      if unknown is not None and np.array_equal(unknown, mask_w):
        unknown = None  # No no-data here: the mask says it (a window less to carry).
      yield Window(tile_key=key, y=y, x=x, tile_shape=(h, w), image=img, mask=mask_w,
                   seconds=time.perf_counter() - start, spill_to=spill_to, unknown=unknown, **extras)
      start = time.perf_counter()


def tile_context(tile: Tile, spec: WindowSpec) -> tuple[np.ndarray, Optional[np.ndarray]]:
  """The classical fill of a whole in-memory tile, on the 0…1 scale.

  Returns:
    ``(context [H, W, C], mapped_guide [H, W, C] or None)``: the push-pull
    fill of the tile's known ground (:func:`context.guided_fill` when the
    tile carries a guide), and the guide mapped to its radiometry.
  """
  lo, hi = value_range(tile.profile["dtype"], spec.value_range)
  unit = to_unit(tile.image, lo, hi)
  known = tile.known().astype(np.float32)
  fill = tile.context if tile.context is not None else ctx.push_pull(unit, known)
  if tile.guide is None:
    return fill, None
  g = ctx.guided_fill(unit, known, tile.guide, tile.guide_valid, unguided=fill)
  return g.fill, g.mapped


def cut(tile: Tile, spec: WindowSpec, fill: Optional[np.ndarray] = None,
        mapped: Optional[np.ndarray] = None) -> Iterator[Window]:
  """Yields the windows of an in-memory ``tile`` that hold a missing pixel,
  each with its crop of the tile's context ``fill`` (and guide) when given."""
  context = None
  if fill is not None:
    size = spec.size
    gmask = None if tile.guide_valid is None else 1.0 - np.asarray(tile.guide_valid, np.float32)

    def context(y, x, _img, _known):
      out = {"context": _pad_reflect(fill[y:y + size, x:x + size], size)}
      if mapped is not None:
        out["guide"] = _pad_reflect(mapped[y:y + size, x:x + size], size)
        out["guide_mask"] = _pad_reflect(gmask[y:y + size, x:x + size], size)[:, :, None]
      return out

  return cut_rows(tile.key, tile.mask, tile.profile["dtype"], lambda y0, y1: tile.image[y0:y1], spec,
                  known=tile.known(), context=context)


class CutWindows(beam.DoFn):
  """:class:`Tile` -> :class:`Window` for every window with holes.

  Each in-memory tile's context (:func:`tile_context`) is computed once and
  each window carries its crop; its quicklook goes to ``DIR/preview/`` first.
  Large scenes (:class:`transforms.scenes.SceneRef`) are cut by
  :func:`transforms.scene_context.cut_scene`, one row of windows at a time.
  """

  def __init__(self, spec: WindowSpec, output_dir: str, preview: bool = True, guide_spec=None):
    self._spec = spec
    self._output = output_dir
    self._preview = preview
    self._guide = guide_spec

  def process(self, tile) -> Iterator[Window]:
    # pylint: disable=import-outside-toplevel
    from transforms import preview
    if isinstance(tile, Tile):
      fill, mapped = tile_context(tile, self._spec)
      if self._preview and self._output:
        preview.write_tile_preview(self._output, tile, fill, self._spec.value_range)
      windows = cut(tile, self._spec, fill, mapped)
    else:
      from transforms import scene_context  # pylint: disable=import-outside-toplevel
      windows = scene_context.cut_scene(tile, self._spec, self._output, self._guide,
                                           self._preview and bool(self._output))
    if getattr(tile, "layout", None) is not None and tile.layout.method == "model":
      from transforms import bands  # pylint: disable=import-outside-toplevel
      windows = itertools.chain(windows, bands.group_windows(tile, self._spec, self._output))
    try:
      for win in windows:
        counters.inc("windows")
        yield win
    except Exception as e:  # pylint: disable=broad-except
      # E.g. a scene's file changed since it was decoded: that scene fails, not the run.
      yield beam.pvalue.TaggedOutput(FAILED_WINDOWS, (tile.key, WindowFailure(
          y=-1, x=-1, reason=f"{type(e).__name__}: {e}", scene=not isinstance(tile, Tile), stage="window")))

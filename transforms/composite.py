"""Stage 5: put generated values into the missing pixels, and only there.

Known pixels are never touched: the output is the input array with its
missing pixels replaced, so they come out bit-identical. Where windows
overlap, their values are blended with feathered weights so no seam shows.
Values are clipped to the tile's value range and cast back to its dtype.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Iterable, Optional

import apache_beam as beam
import numpy as np

from transforms import bands as bands_lib
from transforms import counters, footprint
from transforms.pooled import TIMESTAMP, WINDOW, PooledDoFn, small_tile
from transforms.records import DEAD, DeadLetter, RestoredTile, Window, WindowFailure, WindowResult
from transforms.scaling import from_unit, to_unit, value_range
from transforms.tiling import feather

# Models without a ``context`` input (card 1.0 and older) see one window only.
# Their output is trusted up to this fraction of the window's side from known
# ground in the window, and handed over linearly to the tile/scene context
# beyond, so a window far inside a cloud never invents a flat square.
LEGACY_REACH = 0.25


def legacy_blend(restored: np.ndarray,
                 context: np.ndarray,
                 unknown: np.ndarray,
                 reach: float = LEGACY_REACH) -> np.ndarray:
  """A context-blind model's window output over the context.

  Args:
    restored: ``[S, S, C]`` the model's output.
    context: ``[S, S, C]`` the window's crop of the tile/scene context.
    unknown: ``[S, S, 1]`` or ``[S, S]`` 1 = not known ground.
    reach: Fraction of S over which the model's output fades into the context.

  Returns:
    ``[S, S, C]`` float32: the model's output next to known ground, the
    context where the window holds no known pixel within ``reach * S``.
  """
  from scipy import ndimage  # pylint: disable=import-outside-toplevel
  u = np.asarray(unknown).reshape(restored.shape[:2]) > 0.5
  if not (~u).any():
    return np.asarray(context, np.float32)
  d = ndimage.distance_transform_edt(u)
  r = max(1.0, reach * restored.shape[0])
  w = np.clip(1.0 - d / r, 0.0, 1.0)[..., None].astype(np.float32)
  return (w * restored + (1.0 - w) * context).astype(np.float32)


def window_result(win: Window, restored: np.ndarray, overlap: int, takes_context: bool) -> WindowResult:
  """A window's model output as the values to composite (``win`` is not modified).

  A context-blind model's output is first faded into the window's context
  (:func:`legacy_blend`). Used by the pipeline (:mod:`transforms.infer`) and
  by the in-memory engine (:mod:`transforms.engine`) alike.
  """
  restored = np.asarray(restored, np.float32)
  if not takes_context and win.context is not None:
    unknown = win.mask if win.unknown is None else win.unknown
    restored = legacy_blend(restored, win.context, unknown)
  return sparsify(dataclasses.replace(win, restored=restored), overlap)


def sparsify(win: Window, overlap: int) -> WindowResult:
  """Keeps a restored window's values at its missing pixels inside the tile."""
  size = win.image.shape[0]
  h = min(size, win.tile_shape[0] - win.y)
  w = min(size, win.tile_shape[1] - win.x)
  holes = win.mask[:h, :w, 0] > 0.5
  return WindowResult(y=win.y,
                      x=win.x,
                      h=h,
                      w=w,
                      values=np.asarray(win.restored[:h, :w][holes], np.float32),
                      weights=feather(size, overlap)[:h, :w][holes],
                      seconds=win.seconds,
                      group=win.group)


def blend(mask: np.ndarray, results: Iterable[WindowResult], bands: int) -> np.ndarray:
  """Weighted mean of the windows' values at each missing pixel.

  Args:
    mask: ``[H, W]`` bool, True = missing.
    results: Every window of the tile that holds missing pixels.
    bands: C.

  Returns:
    ``[n_missing, C]`` float32 in row-major order of the missing pixels.

  Raises:
    ValueError: some missing pixel was covered by no window.
  """
  n = int(mask.sum())
  index = np.full(mask.shape, -1, dtype=np.int32)
  index[mask] = np.arange(n, dtype=np.int32)
  acc = np.zeros((n, bands), np.float32)
  wsum = np.zeros(n, np.float32)
  for r in results:
    ii = index[r.y:r.y + r.h, r.x:r.x + r.w][mask[r.y:r.y + r.h, r.x:r.x + r.w]]
    if ii.shape[0] != r.values.shape[0]:
      raise ValueError(f"window at ({r.y}, {r.x}) carries {r.values.shape[0]} values "
                       f"for {ii.shape[0]} missing pixels")
    acc[ii] += r.values * r.weights[:, None]
    wsum[ii] += r.weights
  if (wsum <= 0).any():
    raise ValueError(f"{int((wsum <= 0).sum())} missing pixels were covered by no window")
  return acc / wsum[:, None]


def to_dtype(values: np.ndarray, dtype: str, vrange: tuple[float, float], nodata: Optional[float] = None) -> np.ndarray:
  """0…1 values back to the tile's scale and dtype, clipped to its range.

  A generated value that would equal the no-data value is nudged one step
  away, so restored pixels are never read as no-data.
  """
  lo, hi = vrange
  out = np.clip(from_unit(values, lo, hi), lo, hi)
  dt = np.dtype(dtype)
  if dt.kind in "iu":
    info = np.iinfo(dt)
    out = np.clip(np.rint(out), info.min, info.max).astype(dt)
    if nodata is not None and np.isfinite(nodata) and info.min <= nodata <= info.max:
      step = 1 if nodata < info.max else -1
      out[out == dt.type(nodata)] = dt.type(nodata + step)
  else:
    out = out.astype(dt)
    if nodata is not None and np.isfinite(nodata):
      out[out == dt.type(nodata)] = np.nextafter(dt.type(nodata), dt.type(np.inf))
  return out


def composite(image: np.ndarray,
              mask: np.ndarray,
              results: Iterable[WindowResult],
              value_range_override: Optional[tuple[float, float]] = None,
              nodata: Optional[float] = None) -> np.ndarray:
  """The restored tile: ``image`` with its missing pixels filled.

  Args:
    image: ``[H, W, C]`` input tile (not modified).
    mask: ``[H, W]`` bool, True = missing.
    results: The tile's restored windows.
    value_range_override: ``(lo, hi)`` of the 0…1 scaling, or None for the
      dtype's default.
    nodata: The tile's no-data value, if any.
  """
  vrange = value_range(str(image.dtype), value_range_override)
  filled = to_dtype(blend(mask, results, image.shape[2]), str(image.dtype), vrange, nodata)
  out = image.copy()
  out[mask] = filled
  return out


def finish_tile(tile, restored: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray], dict]:
  """Writes the no-data value into unfilled pixels; returns ``(restored,
  provenance [H, W] uint8, metrics)`` (see :mod:`transforms.footprint`)."""
  extra = dict(tile.notes)
  nodata_value = tile.profile.get("nodata")
  if tile.unfilled is not None:
    n = int(tile.unfilled.sum())
    extra["unfilled"] = n
    if nodata_value is not None:
      restored[tile.unfilled] = np.asarray(nodata_value).astype(restored.dtype)
      extra["unfilled_as"] = "nodata"
    else:
      extra["unfilled_as"] = "input unchanged (the file declares no no-data value)"
  else:
    extra["unfilled"] = 0
  if tile.nodata is not None:
    extra["nodata_pixels"] = int(tile.nodata.sum())
  guided = None
  if tile.guide_valid is not None:
    guided = np.asarray(tile.guide_valid) >= 1.0
    extra["guided_pixels"] = int((tile.mask & guided).sum())
  prov = footprint.provenance(tile.mask, tile.nodata, tile.unfilled, guided)
  return restored, prov, extra


class CompositeTiles(PooledDoFn):
  """``(key, {"tile": [Tile], "windows": [WindowResult...]})`` -> RestoredTile.

  Failures go to the ``dead`` output. Small tiles are composited on the DoFn's
  thread pool (:class:`transforms.pooled.PooledDoFn`), larger ones here.
  """

  STEP = "composite"

  def __init__(self, value_range_override: Optional[tuple[float, float]] = None, threads: Optional[int] = None):
    super().__init__(threads)
    self._vrange = value_range_override

  def process(self, joined, window=WINDOW, timestamp=TIMESTAMP):
    small = all(small_tile(t) for t in joined[1]["tile"])
    yield from self.pooled(self._composite, (joined,), window, timestamp, on_pool=small)

  def _composite(self, joined):
    _, groups = joined
    results = list(groups["windows"])
    failures = [r for r in results if isinstance(r, WindowFailure)]
    if not groups["tile"]:
      # Windows whose tile never reached the join: a defect upstream. The
      # summary dead-letters the input as lost (pipeline.summary); this says where.
      counters.inc("windows_without_tile")
      logging.getLogger(__name__).error("%s: %d restored window(s) arrived without their tile", joined[0], len(results))
    for tile in groups["tile"]:  # Exactly one: keys are unique file names.
      if failures:  # Inference failed for some of its windows (see transforms.infer).
        counters.inc("failed_infer")
        yield beam.pvalue.TaggedOutput(DEAD, DeadLetter.of_failed_windows(tile.pair.image_path, failures))
        continue
      start = time.perf_counter()
      try:
        restored = composite(tile.image, tile.mask, [r for r in results if not r.group], self._vrange,
                             tile.profile.get("nodata"))
        if tile.layout is not None:  # Every band comes out (transforms.bands).
          restored = restore_extra_bands(tile, restored, value_range(tile.profile["dtype"], self._vrange), results)
        restored, prov, extra = finish_tile(tile, restored)
      except Exception as e:  # pylint: disable=broad-except
        counters.inc("failed_composite")
        reason = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
        yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(tile.pair.image_path, "composite", reason))
        continue
      seconds = time.perf_counter() - start
      counters.record("composite_ms", 1000 * seconds)
      # A new record with the timings added: the joined tile is not modified.
      timings = dict(tile.timings, window_infer=float(sum(r.seconds for r in results)), composite=seconds)
      counters.inc("composited")
      yield RestoredTile(tile=dataclasses.replace(tile, timings=timings),
                         restored=restored,
                         windows=len(results),
                         provenance=prov,
                         metrics=extra)


def restore_extra_bands(tile, restored: np.ndarray, vrange: tuple[float, float], results: Iterable = ()) -> np.ndarray:
  """The whole restored tile, every band, from its restored model bands.

  Args:
    tile: A :class:`transforms.records.Tile` with ``full`` and ``layout``.
    restored: ``[H, W, M]`` the composited model bands, input dtype.
    vrange: The 0…1 scaling ``(lo, hi)``.
    results: The tile's window results; those of ``group >= 1`` are the
      extra bands' (``--extra-bands model``).

  Returns:
    ``[H, W, count]`` input dtype: the input with every band's holes filled.
  """
  layout = tile.layout
  out = tile.full.copy()
  out[:, :, list(layout.model)] = restored
  extra = list(layout.extra)
  if not extra or not tile.mask.any():
    return out
  nodata = tile.profile.get("nodata")
  if layout.method == "model":
    by_group: dict[int, list] = {}
    for r in results:
      by_group.setdefault(getattr(r, "group", 0), []).append(r)
    done = set()
    for g, group in enumerate(layout.groups(), start=1):
      filled = composite(tile.full[:, :, list(group)], tile.mask, by_group.get(g, []), vrange, nodata)
      for j, b in enumerate(group):
        if b not in done:
          out[:, :, b] = filled[:, :, j]
          done.add(b)
    return out
  lo, hi = vrange
  hole = tile.mask
  filled = bands_lib.guided_extra(to_unit(tile.full[:, :, extra], lo, hi), to_unit(restored, lo, hi), tile.known(),
                                  hole)
  sub = out[:, :, extra]
  sub[hole] = to_dtype(filled[hole], str(out.dtype), vrange, nodata)
  out[:, :, extra] = sub
  return out

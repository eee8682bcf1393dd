"""Context beyond the window: classical fills computed over a whole tile or scene.

The model restores model-sized windows, but a cloud can be far larger than a
window. Every hole pixel's fill must draw on the nearest known ground however
far away it is, and neighbouring windows must agree. So, before any window is
cut, the pipeline computes a **context** image over the whole tile (or, for a
streamed scene, over a low-resolution copy of the whole scene) and gives each
window its crop as an extra model input; the model predicts a correction on
top of it.

* :func:`push_pull` — pyramid (push-pull) interpolation: known pixels are
  averaged down a pyramid with their validity as weight, then holes are
  filled from the coarser level on the way back up with masked 3x3 smoothing
  sweeps, close to a membrane (harmonic) interpolation, i.e. what GDAL
  FillNodata does, but in O(pixels) and without any distance limit.
* guided fills (a guide date, or restored bands guiding other bands) are in
  :mod:`transforms.regression`.
* :class:`LowRes` — a scene reduced by block means of its known pixels, built
  one band of rows at a time (streamed scenes), whose fill is the prior (the
  coarsest level) of each row of windows' own fine fill
  (:meth:`LowRes.region_context`, :func:`push_pull` with ``prior``).

Pure numpy (no TensorFlow, no Beam): the training data loader uses the very
same functions, so the model is trained on the inputs the pipeline gives it.
All images are float32 ``[H, W, C]`` on the model's 0…1 scale; validity
arrays are float32 ``[H, W]`` in 0…1 (1 = known).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

# Weights below this count as "no known pixel" when dividing.
_EPS = 1e-6


def _pool2(a: np.ndarray) -> np.ndarray:
  """2x2 mean over the first two axes (odd sides padded with zeros)."""
  h, w = a.shape[:2]
  if h % 2 or w % 2:
    a = np.pad(a, [(0, h % 2), (0, w % 2)] + [(0, 0)] * (a.ndim - 2))
  out = a[0::2, 0::2] + a[1::2, 0::2]  # ((a + b) + c) + d, in place: the same sums, fewer copies.
  out += a[0::2, 1::2]
  out += a[1::2, 1::2]
  out *= np.float32(0.25)
  return out


def _box3(f: np.ndarray) -> np.ndarray:
  """3x3 box mean over the first two axes, mirrored edges."""
  p = np.concatenate([f[:1], f, f[-1:]], axis=0)
  v = p[:-2] + p[1:-1] + p[2:]
  v = np.concatenate([v[:, :1], v, v[:, -1:]], axis=1)
  return (v[:, :-2] + v[:, 1:-1] + v[:, 2:]) * np.float32(1.0 / 9.0)


def _box3_into(f: np.ndarray, v: np.ndarray, out: np.ndarray) -> np.ndarray:
  """:func:`_box3` of ``f`` (``[h, w, C]``, h and w at least 3, all three
  C-contiguous) written into ``out``, ``v`` scratch: the same sums in the same
  order, so the same bits, without padded copies or temporaries.

  The horizontal sums run over the flattened rows at once (a strided slice
  per row is three times slower); the first and last columns, where they
  mix two rows, are then written as the mirrored edges. Both edges of an axis
  are one operation (the slices ``0, n-2`` / ``0, n-1`` / ``1, n-1``).
  """
  n, m, c = f.shape
  np.add(f[:-2], f[1:-1], out=v[1:-1])
  v[1:-1] += f[2:]
  np.add(f[0:n - 1:n - 2], f[0::n - 1], out=v[0::n - 1])  # Rows 0 and n-1: f0+f0+f1, f[n-2]+f[n-1]+f[n-1].
  v[0::n - 1] += f[1::n - 2]
  vf, of = v.reshape(-1), out.reshape(-1)
  np.add(vf[:-2 * c], vf[c:-c], out=of[c:-c])
  of[c:-c] += vf[2 * c:]
  np.add(v[:, 0:m - 1:m - 2], v[:, 0::m - 1], out=out[:, 0::m - 1])
  out[:, 0::m - 1] += v[:, 1::m - 2]
  out *= np.float32(1.0 / 9.0)
  return out


def _box3_copy(f: np.ndarray) -> np.ndarray:
  """:func:`_box3` of ``f`` as a new array, through :func:`_box3_into` where it can."""
  if f.dtype != np.float32 or f.ndim != 3 or min(f.shape[:2]) < 3:
    return _box3(f)
  f = np.ascontiguousarray(f)
  return _box3_into(f, np.empty_like(f), np.empty_like(f))


# Below this side the loop's fewer numpy calls beat the in-place sums (10 vs 8 µs a sweep at 10²).
_SMALL = 32


def _smooth(f: np.ndarray, known: np.ndarray, rest: np.ndarray, sweeps: int) -> np.ndarray:
  """``sweeps`` times ``f = known + rest * _box3(f)``, bit-identical, on reused
  contiguous buffers; ``known`` and ``rest`` full ``[h, w, C]`` (a broadcast
  last axis of 1 runs numpy's inner loop a few elements at a time)."""
  if (sweeps == 0 or min(f.shape[:2]) < _SMALL or
      any(a.dtype != np.float32 or a.shape != f.shape for a in (f, known, rest))):
    for _ in range(sweeps):
      f = known + rest * _box3(f)
    return f
  f = np.array(f, np.float32, order="C")
  v, b = np.empty_like(f), np.empty_like(f)
  for _ in range(sweeps):
    _box3_into(f, v, b)
    b *= rest
    np.add(known, b, out=f)
  return f


def _up(f: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
  """Nearest 2x upsampling cropped to ``shape``, then a 3x3 box mean."""
  u = np.repeat(np.repeat(f, 2, axis=0), 2, axis=1)[:shape[0], :shape[1]]
  return _box3(u)


def _sweeps(level: int) -> int:
  """Masked smoothing sweeps at a pyramid level (finest = 0): coarse levels
  are cheap, so they get more (2, 8, then 24: +0.075 dB hole PSNR over
  2, 4, 6, 8… on 18 held-out 256² tiles, at the same cost)."""
  return 2 if level == 0 else (8 if level == 1 else 24)


def levels_for(shape: tuple[int, int]) -> int:
  """Pyramid depth that brings the larger side down to 1 or 2 pixels."""
  n, side = 0, max(shape)
  while side > 2:
    side = (side + 1) // 2
    n += 1
  return n


def fill_windows(shapes: list[tuple[int, int]], crop: tuple[int, int, int, int],
                 levels: int) -> list[tuple[int, int, int, int]]:
  """Per pyramid level, the ``(y0, y1, x0, x1)`` cells whose fill must be
  computed for the output to be exact on ``crop`` (level 0).

  A level's pass applies ``1 + _sweeps(level)`` 3x3 box means (the
  upsampling's, then the sweeps), and a box mean is exact one pixel less
  deep inside a window than the values it reads (its mirrored edge is wrong
  unless the window's edge is the array's), so each level's window is what
  the finer level reads, grown by that many pixels.
  """
  y0, y1, x0, x1 = crop
  out = []
  for lvl in range(levels + 1):
    h, w = shapes[lvl]
    g = 1 + _sweeps(lvl)
    y0, y1, x0, x1 = max(0, y0 - g), min(h, y1 + g), max(0, x0 - g), min(w, x1 + g)
    out.append((y0, y1, x0, x1))
    y0, y1, x0, x1 = y0 // 2, (y1 + 1) // 2, x0 // 2, (x1 + 1) // 2  # The coarser cells read.
  return out


def push_pull(values: np.ndarray,
              valid: np.ndarray,
              prior: Optional[np.ndarray] = None,
              levels: Optional[int] = None,
              crop: Optional[tuple[int, int, int, int]] = None) -> np.ndarray:
  """Fills pixels whose validity is 0 from the known pixels around them.

  Args:
    values: ``[H, W, C]`` float32; anything where ``valid`` is 0.
    valid: ``[H, W]`` float32 weights in 0…1 (1 = known).
    prior: Optional ``[h_L, w_L, C]`` fill at pyramid level ``levels`` (the
      shape of ``values`` halved ``levels`` times, rounding up), e.g. the crop
      of a whole scene's low-resolution fill: cells that no known pixel of
      ``values`` reaches at that level take it, so a window far inside a
      cloud agrees with its neighbours.
    levels: Pyramid depth; default :func:`levels_for` (or the prior's level).
    crop: ``(y0, y1, x0, x1)``: return only ``[y0:y1, x0:x1]`` of the fill,
      bit-identical to cropping the whole fill, but computing the fine
      levels' smoothing only around the crop (a tile's context drawn over a
      wide margin of its neighbours costs a fraction of the whole fill).

  Returns:
    ``[H, W, C]`` (or the crop's shape) float32: ``values`` where ``valid``
    is 1, interpolated elsewhere; the weighted mean of all known pixels where
    nothing is near; 0 where nothing is known at all and there is no prior.
  """
  values = np.asarray(values, np.float32)
  w0 = np.clip(np.asarray(valid, np.float32), 0.0, 1.0)
  if levels is None:
    levels = levels_for(values.shape[:2])
  # Level 0 holds the values themselves (0 where unknown): each level is a
  # weighted *mean*, weighted once (fractional weights, e.g. LowRes cells).
  xs, ws = pyramid([np.where(w0[..., None] > 0, values, 0.0).astype(np.float32, copy=False)], [w0], levels)
  h, w = values.shape[:2]
  cy0, cy1, cx0, cx1 = (0, h, 0, w) if crop is None else crop
  return pull(xs, ws, (cy0, cy1, cx0, cx1), values[cy0:cy1, cx0:cx1], w0[cy0:cy1, cx0:cx1], prior)


def pyramid(xs: list[np.ndarray], ws: list[np.ndarray], levels: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
  """The push-pull pyramid: ``xs``/``ws`` (level 0 first: weighted-mean values
  ``[h, w, C]`` and weights ``[h, w]``) extended by 2x2 pooling up to level
  ``levels`` (new lists; the given levels are kept as they are).

  Each cell depends only on the finer cells it pools, so a pyramid of a larger
  array, cropped at cells aligned to ``2**level``, equals the pyramid of the
  crop (:mod:`transforms.grid_context` shares one between tiles).
  """
  xs, ws = list(xs), list(ws)
  while len(xs) <= levels:
    wp = _pool2(ws[-1])
    xp = _pool2(xs[-1] * ws[-1][..., None]) / np.maximum(wp, _EPS)[..., None]
    xs.append(xp)
    ws.append(wp)
  return xs, ws


def fill_box(w0: np.ndarray) -> Optional[tuple[int, int, int, int]]:
  """``(y0, y1, x0, x1)``: the bounding box of the pixels of ``w0`` ``[h, w]``
  below 1 (those a fill changes), None if there are none."""
  rows = np.flatnonzero((w0 < 1.0).any(axis=1))
  if rows.size == 0:
    return None
  cols = np.flatnonzero((w0[rows[0]:rows[-1] + 1] < 1.0).any(axis=0))
  return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def pull(xs: list[np.ndarray],
         ws: list[np.ndarray],
         crop: tuple[int, int, int, int],
         values: np.ndarray,
         w0: np.ndarray,
         prior: Optional[np.ndarray] = None,
         shapes: Optional[list[tuple[int, int]]] = None,
         offsets: Optional[list[tuple[int, int]]] = None) -> np.ndarray:
  """The fill of ``crop`` from a :func:`pyramid` (``len(xs) - 1`` levels):
  the coarsest level's fill (``prior``, or the known pixels' mean), then each
  finer level's upsampling and masked smoothing, computed only around the crop.

  Only the part of the crop where ``w0`` is below 1 (:func:`fill_box`) is
  filled: the rest is ``values`` in the result either way, so the fine levels
  are smoothed around that box alone (bit-identical, as any crop is).

  Args:
    xs, ws: The pyramid, level 0 (the full array) first.
    crop: ``(y0, y1, x0, x1)`` on level 0.
    values: ``[y1 - y0, x1 - x0, C]`` float32 the input values on the crop.
    w0: ``[y1 - y0, x1 - x0]`` float32 their validity (clipped to 0…1).
    prior: As :func:`push_pull`'s.
    shapes: Each level's whole shape, when ``xs`` hold only parts of the
      finer levels (default: their shapes).
    offsets: ``(y, x)`` of each ``xs[lvl]``'s first cell in its level
      (default 0, 0): a level needs to cover only its
      :func:`fill_windows` cell window; the coarsest is whole.
  """
  if prior is not None:
    prior = np.asarray(prior, np.float32)
    if prior.shape[:2] != ws[-1].shape[:2]:
      raise ValueError(f"prior has shape {prior.shape[:2]}, level {len(xs) - 1} has {ws[-1].shape[:2]}")
  box = fill_box(w0)
  if box != (0, w0.shape[0], 0, w0.shape[1]):
    out = np.array(values, np.float32)
    if box is not None:
      a0, a1, b0, b1 = box
      inner = (crop[0] + a0, crop[0] + a1, crop[2] + b0, crop[2] + b1)
      out[a0:a1, b0:b1] = _pull_crop(xs, ws, inner, values[a0:a1, b0:b1], w0[a0:a1, b0:b1], prior, shapes, offsets)
    return out
  return _pull_crop(xs, ws, crop, values, w0, prior, shapes, offsets)


def _pull_crop(xs, ws, crop, values, w0, prior, shapes, offsets) -> np.ndarray:
  """:func:`pull` on exactly ``crop`` (no narrowing)."""
  levels = len(xs) - 1
  top_w = ws[-1][..., None]
  if prior is not None:
    f = prior
  else:
    total = float(ws[-1].sum())
    mean = ((xs[-1] * top_w).sum(axis=(0, 1)) / total) if total > _EPS else np.zeros(values.shape[2], np.float32)
    f = np.broadcast_to(mean.astype(np.float32), xs[-1].shape)
  shapes = [x.shape[:2] for x in xs] if shapes is None else shapes
  offsets = [(0, 0)] * len(xs) if offsets is None else offsets
  win = fill_windows(shapes, crop, levels)
  for lvl in range(levels, -1, -1):
    y0, y1, x0, x1 = win[lvl]
    if lvl < levels:
      # _up on the window: the coarser window's cells repeated 2x2, cut to this one.
      py0, _, px0, _ = win[lvl + 1]
      u = np.repeat(np.repeat(f, 2, axis=0), 2, axis=1)
      f = _box3_copy(u[y0 - 2 * py0:y1 - 2 * py0, x0 - 2 * px0:x1 - 2 * px0])
    else:
      f = f[y0:y1, x0:x1]
    oy, ox = offsets[lvl]
    wl = np.clip(ws[lvl][y0 - oy:y1 - oy, x0 - ox:x1 - ox], 0.0, 1.0)[..., None]
    wl = np.repeat(wl, xs[lvl].shape[2], axis=2)  # Full-shape operands: see _smooth.
    known = xs[lvl][y0 - oy:y1 - oy, x0 - ox:x1 - ox] * wl
    rest = 1.0 - wl
    f = known + rest * f
    f = _smooth(f, known, rest, _sweeps(lvl))
  cy0, cy1, cx0, cx1 = crop
  y0, _, x0, _ = win[0]
  f = f[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
  out = np.where(w0[..., None] >= 1.0, values, f)
  return out.astype(np.float32)


def level_shape(shape: tuple[int, int], levels: int) -> tuple[int, int]:
  """The shape of pyramid level ``levels`` of an array of ``shape``."""
  h, w = shape
  for _ in range(levels):
    h, w = (h + 1) // 2, (w + 1) // 2
  return h, w


def factor_for(shape: tuple[int, int], max_side: int = 1024) -> int:
  """The power of two that brings a scene's larger side to ``max_side`` or less."""
  f = 1
  while max(shape) / f > max_side:
    f *= 2
  return f


class LowRes:
  """A scene reduced by ``factor`` (block means of its known pixels), filled.

  Built by :meth:`add_rows` one band of rows at a time (each band's height a
  multiple of ``factor``, but the last), then :meth:`finish`; memory is the
  low-resolution scene only.

  Attributes:
    factor: Power of two, full-resolution pixels per low-resolution pixel.
    fill: ``[ceil(H/f), ceil(W/f), C]`` float32 push-pull fill, after
      :meth:`finish`.
  """

  def __init__(self, shape: tuple[int, int], bands: int, factor: int):
    if factor < 1 or factor & (factor - 1):
      raise ValueError(f"factor must be a power of two, got {factor}")
    self.shape, self.factor = tuple(shape), int(factor)
    h, w = -(-shape[0] // factor), -(-shape[1] // factor)
    self._sum = np.zeros((h, w, bands), np.float64)
    self._n = np.zeros((h, w), np.float64)
    self.fill: Optional[np.ndarray] = None

  def add_rows(self, y0: int, values: np.ndarray, valid: np.ndarray) -> None:
    """Adds full-resolution rows starting at ``y0`` (a multiple of the factor)."""
    f = self.factor
    if y0 % f:
      raise ValueError(f"rows must start at a multiple of {f}, got {y0}")
    rows, width = valid.shape
    ph, pw = (-rows) % f, (-width) % f
    v = np.pad(np.asarray(valid, np.float32), [(0, ph), (0, pw)])
    x = np.pad(np.asarray(values, np.float32) * np.asarray(valid, np.float32)[..., None], [(0, ph), (0, pw), (0, 0)])
    hh, ww = v.shape[0] // f, v.shape[1] // f
    r = y0 // f
    self._n[r:r + hh] += v.reshape(hh, f, ww, f).sum(axis=(1, 3))
    self._sum[r:r + hh] += x.reshape(hh, f, ww, f, -1).sum(axis=(1, 3))

  def finish(self) -> np.ndarray:
    """Fills the low-resolution scene; returns :attr:`fill`."""
    w = self._n / float(self.factor * self.factor)
    mean = (self._sum / np.maximum(self._n, 1.0)[..., None]).astype(np.float32)
    self.fill = push_pull(mean, w.astype(np.float32))
    return self.fill

  def region_prior(self, y0: int, h: int, x0: int = 0, w: Optional[int] = None) -> np.ndarray:
    """The prior of the region of rows ``[y0, y0 + h)`` and columns
    ``[x0, x0 + w)`` (corners multiples of the factor; ``w`` default: to the
    scene's right edge) for :func:`push_pull` with ``levels = log2(factor)``."""
    if self.fill is None:
      raise RuntimeError("LowRes.finish() has not run")
    f = self.factor
    if y0 % f or x0 % f:
      raise ValueError(f"a region must start at multiples of {f}, got ({y0}, {x0})")
    w = self.shape[1] - x0 if w is None else w
    n = level_shape((h, w), int(np.log2(f)))
    crop = self.fill[y0 // f:y0 // f + n[0], x0 // f:x0 // f + n[1]]
    ph, pw = n[0] - crop.shape[0], n[1] - crop.shape[1]
    if ph or pw:
      crop = np.pad(crop, [(0, ph), (0, pw), (0, 0)], mode="edge")
    return crop

  def region_context(self,
                     values: np.ndarray,
                     valid: np.ndarray,
                     y0: int,
                     chunk: int = 1024,
                     halo: int = 128) -> np.ndarray:
    """The fine context of full-width rows starting at ``y0``: their own
    push-pull under the scene's low-resolution fill as the coarsest level,
    computed in column chunks of ``chunk`` (with ``halo`` columns of overlap
    on each side), so memory follows the chunk, not the scene's width."""
    levels = int(np.log2(self.factor))
    h, w = values.shape[:2]
    if levels == 0:
      prior = self.region_prior(y0, h)
      return np.where(np.asarray(valid)[..., None] >= 1.0, values, prior).astype(np.float32)
    f = self.factor
    out = np.empty(values.shape, np.float32)
    for c0 in range(0, w, chunk):
      a = max(0, (c0 - halo) // f * f)
      b = min(w, c0 + chunk + halo)
      part = push_pull(values[:, a:b], valid[:, a:b], prior=self.region_prior(y0, h, a, b - a), levels=levels)
      out[:, c0:min(w, c0 + chunk)] = part[:, c0 - a:c0 - a + min(chunk, w - c0)]
    return out


def box_sum(a: np.ndarray, r: int) -> np.ndarray:
  """Sum over the ``(2r+1)``-square around each pixel (zero outside), first two axes."""
  c = np.cumsum(np.cumsum(np.pad(a, [(r + 1, r), (r + 1, r)] + [(0, 0)] * (a.ndim - 2)), axis=0, dtype=np.float64),
                axis=1)
  k = 2 * r + 1
  return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]).astype(np.float32)

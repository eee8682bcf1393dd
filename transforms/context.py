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
* :func:`guided_fill` — a guide date mapped to the target's radiometry by a
  per-band linear fit on pixels known in both, plus the fit's residual
  interpolated into the holes (the classical "fit + residual" guided fill).
* :class:`LowRes` — a scene reduced by block means of its known pixels, built
  one band of rows at a time (streamed scenes), whose fill is the prior of
  every window's own fine fill (:func:`push_pull` with ``prior``).

Pure numpy (no TensorFlow, no Beam): the training data loader uses the very
same functions, so the model is trained on the inputs the pipeline gives it.
All images are float32 ``[H, W, C]`` on the model's 0…1 scale; validity
arrays are float32 ``[H, W]`` in 0…1 (1 = known).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

# Weights below this count as "no known pixel" when dividing.
_EPS = 1e-6


def _pool2(a: np.ndarray) -> np.ndarray:
  """2x2 mean over the first two axes (odd sides padded with zeros)."""
  h, w = a.shape[:2]
  if h % 2 or w % 2:
    a = np.pad(a, [(0, h % 2), (0, w % 2)] + [(0, 0)] * (a.ndim - 2))
    h, w = a.shape[:2]
  r = a.reshape((h // 2, 2, w // 2, 2) + a.shape[2:])
  return r.mean(axis=(1, 3), dtype=np.float32)


def _box3(f: np.ndarray) -> np.ndarray:
  """3x3 box mean over the first two axes, mirrored edges."""
  p = np.pad(f, [(1, 1), (1, 1)] + [(0, 0)] * (f.ndim - 2), mode="symmetric")
  v = p[:-2] + p[1:-1] + p[2:]
  return (v[:, :-2] + v[:, 1:-1] + v[:, 2:]) * np.float32(1.0 / 9.0)


def _up(f: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
  """Nearest 2x upsampling cropped to ``shape``, then a 3x3 box mean."""
  u = np.repeat(np.repeat(f, 2, axis=0), 2, axis=1)[:shape[0], :shape[1]]
  return _box3(u)


def _sweeps(level: int) -> int:
  """Masked smoothing sweeps at a pyramid level (finest = 0): coarse levels
  are cheap, so they get more."""
  return min(2 + 2 * level, 8)


def levels_for(shape: tuple[int, int]) -> int:
  """Pyramid depth that brings the larger side down to 1 or 2 pixels."""
  n, side = 0, max(shape)
  while side > 2:
    side = (side + 1) // 2
    n += 1
  return n


def push_pull(values: np.ndarray, valid: np.ndarray, prior: Optional[np.ndarray] = None,
              levels: Optional[int] = None) -> np.ndarray:
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

  Returns:
    ``[H, W, C]`` float32: ``values`` where ``valid`` is 1, interpolated
    elsewhere; the weighted mean of all known pixels where nothing is near;
    0 where nothing is known at all and there is no prior.
  """
  values = np.asarray(values, np.float32)
  w0 = np.clip(np.asarray(valid, np.float32), 0.0, 1.0)
  if levels is None:
    levels = levels_for(values.shape[:2])
  xs, ws = [values * w0[..., None]], [w0]
  for _ in range(levels):
    wp = _pool2(ws[-1])
    xp = _pool2(xs[-1] * ws[-1][..., None]) / np.maximum(wp, _EPS)[..., None]
    xs.append(xp)
    ws.append(wp)
  top_w = ws[-1][..., None]
  if prior is not None:
    prior = np.asarray(prior, np.float32)
    if prior.shape[:2] != top_w.shape[:2]:
      raise ValueError(f"prior has shape {prior.shape[:2]}, level {levels} has {top_w.shape[:2]}")
    f = prior
  else:
    total = float(ws[-1].sum())
    mean = ((xs[-1] * top_w).sum(axis=(0, 1)) / total) if total > _EPS else np.zeros(values.shape[2], np.float32)
    f = np.broadcast_to(mean.astype(np.float32), xs[-1].shape)
  for lvl in range(levels, -1, -1):
    if lvl < levels:
      f = _up(f, xs[lvl].shape[:2])
    w = np.clip(ws[lvl], 0.0, 1.0)[..., None]
    known = xs[lvl] * w
    f = known + (1.0 - w) * f
    for _ in range(_sweeps(lvl)):
      f = known + (1.0 - w) * _box3(f)
  out = np.where(w0[..., None] >= 1.0, values, f)
  return out.astype(np.float32)


def level_shape(shape: tuple[int, int], levels: int) -> tuple[int, int]:
  """The shape of pyramid level ``levels`` of an array of ``shape``."""
  h, w = shape
  for _ in range(levels):
    h, w = (h + 1) // 2, (w + 1) // 2
  return h, w


def linear_fit(target: np.ndarray, guide: np.ndarray, both: np.ndarray,
               min_pixels: int = 64) -> tuple[np.ndarray, np.ndarray]:
  """Per-band least-squares gain and offset mapping ``guide`` onto ``target``.

  Args:
    target, guide: ``[H, W, C]`` float32.
    both: ``[H, W]`` bool, pixels known in both.
    min_pixels: Fewer shared pixels than this: gain 1, offset the mean
      difference (or 0).

  Returns:
    ``(gain [C], offset [C])`` float32; gains are clipped to 0…4.
  """
  c = target.shape[2]
  gain, offset = np.ones(c, np.float32), np.zeros(c, np.float32)
  n = int(both.sum())
  if n == 0:
    return gain, offset
  t, g = target[both].astype(np.float64), guide[both].astype(np.float64)
  if n < min_pixels:
    return gain, (t.mean(0) - g.mean(0)).astype(np.float32)
  gm, tm = g.mean(0), t.mean(0)
  var = ((g - gm) ** 2).mean(0)
  cov = ((g - gm) * (t - tm)).mean(0)
  a = np.where(var > 1e-10, cov / np.maximum(var, 1e-10), 1.0)
  a = np.clip(a, 0.0, 4.0)
  return a.astype(np.float32), (tm - a * gm).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class GuidedFill:
  """What :func:`guided_fill` returns.

  Attributes:
    mapped: ``[H, W, C]`` the guide mapped to the target's radiometry (0
      where the guide is missing).
    fill: ``[H, W, C]`` the context: known target pixels, the mapped guide
      plus the interpolated residual where the guide is known, the unguided
      push-pull fill elsewhere.
    guided: ``[H, W]`` bool, hole pixels filled with the guide's help.
  """

  mapped: np.ndarray
  fill: np.ndarray
  guided: np.ndarray


def guided_fill(target: np.ndarray, valid: np.ndarray, guide: np.ndarray,
                guide_valid: np.ndarray, unguided: Optional[np.ndarray] = None) -> GuidedFill:
  """The classical guided fill: linear fit of the guide plus its residual.

  Args:
    target: ``[H, W, C]`` 0…1, anything where ``valid`` is 0.
    valid: ``[H, W]`` 1 = known target pixel.
    guide: ``[H, W, C]`` 0…1, the same place on another date, on the
      target's grid.
    guide_valid: ``[H, W]`` 1 = usable guide pixel (not cloud, not no-data).
    unguided: The unguided context (default: :func:`push_pull` of target).

  Returns:
    A :class:`GuidedFill`.
  """
  valid = np.asarray(valid, np.float32)
  gv = np.asarray(guide_valid, np.float32)
  both = (valid >= 1.0) & (gv >= 1.0)
  gain, offset = linear_fit(target, guide, both)
  mapped = (guide * gain + offset) * gv[..., None]
  if unguided is None:
    unguided = push_pull(target, valid)
  if both.any():
    resid = push_pull(np.where(both[..., None], target - mapped, 0.0), both.astype(np.float32))
  else:
    resid = np.zeros_like(target)
  hole = valid < 1.0
  use = hole & (gv >= 1.0)
  fill = np.where(use[..., None], mapped + resid, unguided)
  fill = np.where(hole[..., None], fill, target)
  return GuidedFill(mapped=mapped.astype(np.float32), fill=fill.astype(np.float32), guided=use)


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
    x = np.pad(np.asarray(values, np.float32) * np.asarray(valid, np.float32)[..., None],
               [(0, ph), (0, pw), (0, 0)])
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

  def window_prior(self, y: int, x: int, size: int) -> np.ndarray:
    """The prior of a ``size``-square window at ``(y, x)`` for :func:`push_pull`
    with ``levels = log2(factor)``: the low-resolution fill over the window
    (edge-padded past the scene)."""
    if self.fill is None:
      raise RuntimeError("LowRes.finish() has not run")
    f = self.factor
    n = level_shape((size, size), int(np.log2(f)))
    # Corners off the factor grid take the nearest low-resolution cell: the
    # prior is smooth, and the window's own fine levels correct the rest.
    r, c = max(0, int(round(y / f))), max(0, int(round(x / f)))
    crop = self.fill[r:r + n[0], c:c + n[1]]
    ph, pw = n[0] - crop.shape[0], n[1] - crop.shape[1]
    if ph or pw:
      crop = np.pad(crop, [(0, ph), (0, pw), (0, 0)], mode="edge")
    return crop

  def window_context(self, values: np.ndarray, valid: np.ndarray, y: int, x: int) -> np.ndarray:
    """The fine context of a window: its own push-pull over the scene prior."""
    size = values.shape[0]
    levels = int(np.log2(self.factor))
    if levels == 0:
      # No reduction: the low-resolution fill is the full-resolution fill.
      return np.where(np.asarray(valid)[..., None] >= 1.0, values,
                      self.window_prior(y, x, size)[:values.shape[0], :values.shape[1]])
    return push_pull(values, valid, prior=self.window_prior(y, x, size), levels=levels)

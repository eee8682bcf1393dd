"""Guided fills: a guide regressed onto the target, plus the fit's residual.

A guide is the same place on another date (``--guide``), or the restored
bands of the same image guiding its other bands (:mod:`transforms.bands`).

* :func:`guided_fill` — the guide mapped to the target's radiometry by a
  local regression of every target band on all the guide's bands
  (:func:`local_regression`, on pixels known in both), plus the fit's
  residual interpolated into the holes by :func:`transforms.context.push_pull`
  (a "fit + residual" guided fill).
* :func:`linear_fit`, :func:`local_linear_fit` — the global and local
  per-band fits (baselines, and the fallback with too few shared pixels).

Pure numpy, as :mod:`transforms.context`; images are float32 ``[H, W, C]`` on
the model's 0…1 scale, validity arrays float32 ``[H, W]`` in 0…1.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from transforms.context import box_sum, push_pull

# Half-side of the squares of the guide's local regression (pixels): on 40
# held-out two-date 256² windows (benchmarks.guided_context, val split) radius
# 64 scored 23.21 dB hole PSNR, the per-band fit at 32 22.58 dB (chosen on the
# train split: 16/32/64/96/128 gave 23.50/23.67/23.75/23.66/23.55 dB).
GUIDE_RADIUS = 64
# Spectral classes of the guide, each with its own local regression
# (class_mapping): 8 raised the same held-out figure from 23.21 to 23.51 dB
# (chosen on the train split, where 4/8/16 classes gave +0.37/+0.45/+0.49 dB
# at 3.7/6.2/11 times the cost of one regression).
GUIDE_CLASSES = 8


def linear_fit(target: np.ndarray,
               guide: np.ndarray,
               both: np.ndarray,
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
  var = ((g - gm)**2).mean(0)
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


def guided_fill(target: np.ndarray,
                valid: np.ndarray,
                guide: np.ndarray,
                guide_valid: np.ndarray,
                unguided: Optional[np.ndarray] = None,
                radius: int = GUIDE_RADIUS,
                classes: int = GUIDE_CLASSES) -> GuidedFill:
  """The classical guided fill: a class-wise local regression of the guide plus its residual.

  The guide is mapped to the target's radiometry by :func:`local_regression`
  (every target band from all guide bands, per pixel, from the pixels known
  in both within ``radius``; ``radius=0``: one global fit per band,
  :func:`linear_fit`), fitted separately for each of ``classes`` spectral
  classes of the guide (:func:`class_mapping`: a field harvested between
  the dates and the meadow beside it change differently), and the fit's
  residual at the known pixels is interpolated into the holes by
  :func:`push_pull`. On 40 held-out two-date 256² windows under held-out
  real cloud masks (``python -m benchmarks.guided_context``) this scored
  23.51 dB hole PSNR, against 23.21 dB for one regression for all pixels,
  22.58 dB for a per-band local fit (:func:`local_linear_fit`, radius 32),
  and 20.69 dB for no guide.

  Args:
    target: ``[H, W, C]`` 0…1, anything where ``valid`` is 0.
    valid: ``[H, W]`` 1 = known target pixel.
    guide: ``[H, W, C]`` 0…1, the same place on another date, on the
      target's grid.
    guide_valid: ``[H, W]`` 1 = usable guide pixel (not cloud, not no-data).
    unguided: The unguided context (default: :func:`push_pull` of target).
    radius: Half-side of the regression's squares (0: global fits).
    classes: Spectral classes (:func:`class_mapping`; 0 or 1: one
      regression for all pixels; ignored with ``radius=0``).

  Returns:
    A :class:`GuidedFill`.
  """
  valid = np.asarray(valid, np.float32)
  gv = np.asarray(guide_valid, np.float32)
  both = (valid >= 1.0) & (gv >= 1.0)
  if radius > 0:
    gain, offset = local_regression(target, guide, both, radius)
    mapped = apply_regression(guide, gain, offset)
    if classes > 1 and both.any():
      mapped = class_mapping(target, guide, both, gv >= 1.0, radius, classes, mapped)
  else:
    gain, offset = linear_fit(target, guide, both)
    mapped = guide * gain + offset
  mapped = mapped * gv[..., None]
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


def spectral_centroids(guide: np.ndarray,
                       usable: np.ndarray,
                       k: int,
                       sample: int = 4000,
                       iters: int = 12) -> np.ndarray:
  """``k`` spectral classes of the guide: k-means (k-means++ seeding, a fixed
  seed) on at most ``sample`` of its usable pixels. Returns ``[k', C]``,
  ``k' <= k`` (fewer where the guide has fewer distinct values)."""
  pix = np.asarray(guide, np.float32)[usable]
  if len(pix) == 0:
    return np.zeros((0, guide.shape[2]), np.float32)
  rng = np.random.default_rng(0)
  sub = pix[rng.choice(len(pix), min(len(pix), sample), replace=False)].astype(np.float64)
  cents = [sub[rng.integers(len(sub))]]
  for _ in range(k - 1):
    d = np.min(((sub[:, None] - np.array(cents)[None])**2).sum(-1), 1)
    if d.sum() <= 0:
      break
    cents.append(sub[rng.choice(len(sub), p=d / d.sum())])
  c = np.array(cents)
  for _ in range(iters):
    lab = np.argmin(((sub[:, None] - c[None])**2).sum(-1), 1)
    for j in range(len(c)):
      if (lab == j).any():
        c[j] = sub[lab == j].mean(0)
  return c.astype(np.float32)


def class_mapping(target: np.ndarray,
                  guide: np.ndarray,
                  both: np.ndarray,
                  usable: np.ndarray,
                  radius: int,
                  k: int,
                  base: np.ndarray,
                  temperature: float = 1.0) -> np.ndarray:
  """The guide mapped by one :func:`local_regression` per spectral class.

  The guide's pixels are grouped into ``k`` classes (:func:`spectral_centroids`);
  each class gets its own local regression from the pixels of that class
  known in both, so that neighbouring land covers that changed differently
  between the dates (a harvested field, the meadow beside it) are mapped
  differently. Pixels take a soft blend of the classes' mappings, weighted
  by ``exp(-d_j / temperature)`` with ``d_j`` the squared distance to class
  ``j``'s centroid over the median nearest distance (no hard class borders);
  a class with no pixel known in both uses ``base``.

  Args:
    target, guide: ``[H, W, Ct]``, ``[H, W, Cg]`` float32.
    both: ``[H, W]`` bool, pixels known in both.
    usable: ``[H, W]`` bool, usable guide pixels (the classes are learnt there).
    radius: As :func:`local_regression`.
    k: Classes.
    base: ``[H, W, Ct]`` the mapping of one regression for all pixels.

  Returns:
    ``[H, W, Ct]`` float32.
  """
  cents = spectral_centroids(guide, usable, k)
  if len(cents) < 2:
    return base
  g = np.asarray(guide, np.float32)
  d = np.stack([((g - c)**2).sum(-1) for c in cents], -1)
  d /= max(float(np.median(d.min(-1))), 1e-6)
  p = np.exp(-(d - d.min(-1, keepdims=True)) / temperature)
  p /= p.sum(-1, keepdims=True)
  lab = np.argmin(d, -1)
  del d
  out = np.zeros(base.shape, np.float32)
  for j in range(len(cents)):
    m = both & (lab == j)
    mj = base if not m.any() else apply_regression(g, *local_regression(target, g, m, radius, min_support=0.02))
    out += p[..., j:j + 1] * mj
  return out


def local_linear_fit(target: np.ndarray,
                     guide: np.ndarray,
                     both: np.ndarray,
                     radius: int = 16,
                     eps: float = 1e-4,
                     min_support: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
  """Per-pixel, per-band gain and offset mapping ``guide`` onto ``target``.

  A guided-filter style local regression (He et al. 2013) over the pixels
  known in both, by normalised convolution in ``(2 radius + 1)`` squares;
  where a square holds too few such pixels (inside a large hole) gain and
  offset are interpolated by :func:`push_pull` from the nearest squares that
  do. ``eps`` regularises the gain towards 0 in flat areas (then the offset
  is the local mean of the target).

  Returns:
    ``(gain [H, W, C], offset [H, W, C])`` float32; gains clipped to 0…4.
  """
  w = both.astype(np.float32)
  n = box_sum(w, radius)
  area = float((2 * radius + 1)**2)
  ok = n >= min_support * area
  if not ok.any():
    g1, o1 = linear_fit(target, guide, both)
    shape = target.shape
    return np.broadcast_to(g1, shape).copy(), np.broadcast_to(o1, shape).copy()
  nn = np.maximum(n, 1.0)[..., None]
  wg, wt = guide * w[..., None], target * w[..., None]
  mg, mt = box_sum(wg, radius) / nn, box_sum(wt, radius) / nn
  var = box_sum(wg * guide, radius) / nn - mg * mg
  cov = box_sum(wg * target, radius) / nn - mg * mt
  a = np.clip(cov / (np.maximum(var, 0.0) + eps), 0.0, 4.0)
  b = mt - a * mg
  okf = ok.astype(np.float32)
  a, b = push_pull(a * okf[..., None], okf), push_pull(b * okf[..., None], okf)
  # Smooth the coefficients (the guided filter's second averaging).
  ones = box_sum(np.ones(w.shape, np.float32), radius)[..., None]
  a = box_sum(a, radius) / ones
  b = box_sum(b, radius) / ones
  return a.astype(np.float32), b.astype(np.float32)


def local_regression(target: np.ndarray,
                     guide: np.ndarray,
                     both: np.ndarray,
                     radius: int = GUIDE_RADIUS,
                     eps: float = 1e-4,
                     min_support: float = 0.1,
                     step: int = 4) -> tuple[np.ndarray, np.ndarray]:
  """Per-pixel multivariate linear regression of every target band on all guide bands.

  ``target[..., c] ≈ Σ_k guide[..., k] · A[..., k, c] + b[..., c]``, fitted
  by least squares over the pixels known in both within the
  ``(2 radius + 1)`` square around each pixel (the guided filter of He et
  al. 2013 for a colour guide), ``eps`` a ridge on the guide's covariance.
  Where a square holds fewer than ``min_support`` of its area in such
  pixels (inside a large hole), the coefficients are interpolated by
  :func:`push_pull` from the squares that do; then they are averaged over
  the same squares (the guided filter's second pass). One band's change
  between dates (e.g. vegetation's red and green) is predicted from the
  others, which a per-band gain (:func:`local_linear_fit`) cannot do.

  The coefficients vary over ``radius``, not over a pixel, so they are
  computed on a grid ``step`` times coarser from block sums of the exact
  moments (the fast guided filter of He & Sun 2015) and interpolated back:
  on a 512×8000 region this took 2.3 GB and 27 s at full resolution
  (``step=1``); the held-out figure in :func:`guided_fill` is the same
  within 0.01 dB.

  Args:
    target: ``[H, W, Ct]`` float32 (anything where ``both`` is False).
    guide: ``[H, W, Cg]`` float32.
    both: ``[H, W]`` bool, pixels known in both.
    step: Side of the blocks of the coarse grid (1: full resolution).

  Returns:
    ``(A [H, W, Cg, Ct], b [H, W, Ct])`` float32; apply with
    :func:`apply_regression`. No pixel known in both anywhere with enough
    support: one global per-band fit (``Cg == Ct``) or the target's mean.
  """
  target = np.asarray(target, np.float32)
  guide = np.asarray(guide, np.float32)
  h, w_, ct = target.shape
  cg = guide.shape[2]
  w = both.astype(np.float32)
  r = max(1, int(round(radius / step)))
  pool = lambda a: _block_sum(a, step)  # noqa: E731
  sw = pool(w)
  n = box_sum(sw, r)
  ok = n >= min_support * float((2 * r + 1) * step)**2
  if not ok.any():
    a = np.zeros((h, w_, cg, ct), np.float32)
    if cg == ct:
      g1, o1 = linear_fit(target, guide, both)
      a[..., np.arange(ct), np.arange(ct)] = g1
      return a, np.broadcast_to(o1, (h, w_, ct)).copy()
    mean = target[both].mean(0) if both.any() else np.zeros(ct, np.float32)
    return a, np.broadcast_to(mean.astype(np.float32), (h, w_, ct)).copy()
  nn = np.maximum(n, 1e-6)
  wg = guide * w[..., None]
  mg = box_sum(pool(wg), r) / nn[..., None]
  mt = box_sum(pool(target * w[..., None]), r) / nn[..., None]
  hl, wl = n.shape
  gg = np.empty((hl, wl, cg, cg), np.float32)
  for i in range(cg):
    for j in range(i, cg):
      gg[..., i, j] = gg[..., j, i] = box_sum(pool(wg[..., i] * guide[..., j]), r) / nn - mg[..., i] * mg[..., j]
  gt = np.empty((hl, wl, cg, ct), np.float32)
  for i in range(cg):
    for j in range(ct):
      gt[..., i, j] = box_sum(pool(wg[..., i] * target[..., j]), r) / nn - mg[..., i] * mt[..., j]
  del wg
  a = np.linalg.solve(gg + np.float32(eps) * np.eye(cg, dtype=np.float32), gt).astype(np.float32)
  b = mt - np.einsum("hwk,hwkc->hwc", mg, a)
  okf = ok.astype(np.float32)
  coef = np.concatenate([a.reshape(hl, wl, cg * ct), b], axis=-1)
  coef = push_pull(coef * okf[..., None], okf)
  ones = box_sum(np.ones((hl, wl), np.float32), r)[..., None]
  coef = box_sum(coef, r) / ones
  coef = _upsample(coef, (h, w_), step)
  return coef[..., :cg * ct].reshape(h, w_, cg, ct), np.ascontiguousarray(coef[..., cg * ct:])


def _block_sum(a: np.ndarray, step: int) -> np.ndarray:
  """Sums over ``step``-square blocks of the first two axes (zero-padded to a multiple)."""
  if step == 1:
    return np.asarray(a, np.float32)
  h, w = a.shape[:2]
  ph, pw = -h % step, -w % step
  if ph or pw:
    a = np.pad(a, [(0, ph), (0, pw)] + [(0, 0)] * (a.ndim - 2))
  hb, wb = a.shape[0] // step, a.shape[1] // step
  return a.reshape((hb, step, wb, step) + a.shape[2:]).sum(axis=(1, 3), dtype=np.float32)


def _upsample(c: np.ndarray, shape: tuple[int, int], step: int) -> np.ndarray:
  """Bilinear interpolation of block-centred values ``c [h, w, K]`` onto pixels ``shape``."""
  if step == 1:
    return c[:shape[0], :shape[1]]

  def axis(n_out: int, n_in: int):
    pos = np.clip((np.arange(n_out) + 0.5) / step - 0.5, 0.0, n_in - 1.0)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (pos - i0).astype(np.float32)

  y0, y1, fy = axis(shape[0], c.shape[0])
  x0, x1, fx = axis(shape[1], c.shape[1])
  rows = c[y0] * (1.0 - fy)[:, None, None] + c[y1] * fy[:, None, None]
  return (rows[:, x0] * (1.0 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]).astype(np.float32)


def apply_regression(guide: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """``guide [H, W, Cg]`` mapped by :func:`local_regression`'s ``(A, b)``: ``[H, W, Ct]`` float32."""
  return (np.einsum("hwk,hwkc->hwc", np.asarray(guide, np.float32), a) + b).astype(np.float32)

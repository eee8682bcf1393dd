"""Local linear regression of one image on another (the guided filter's moments, fast).

The machinery of :mod:`transforms.regression`'s guided fills: a global
per-band fit (:func:`linear_fit`), and the per-pixel multivariate regression
of every target band on all guide bands (:func:`local_regression`) computed
on a coarse grid from block sums of its moments (:func:`block_moments`, which
also sums every spectral class at once for
:func:`transforms.regression.class_mapping`).

Pure numpy; images float32 ``[H, W, C]``, masks ``[H, W]`` bool.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from transforms.context import box_sum, push_pull

# Half-side of the squares of the guide's local regression (pixels): on 40
# held-out two-date 256² windows (benchmarks.guided_context, val split) radius
# 64 scored 23.21 dB hole PSNR, the per-band fit at 32 22.58 dB (chosen on the
# train split: 16/32/64/96/128 gave 23.50/23.67/23.75/23.66/23.55 dB).
GUIDE_RADIUS = 64
# Side of the blocks of the coarse grid the regression's coefficients are
# computed on (local_regression).
STEP = 4


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


def local_regression(target: np.ndarray,
                     guide: np.ndarray,
                     both: np.ndarray,
                     radius: int = GUIDE_RADIUS,
                     eps: float = 1e-4,
                     min_support: float = 0.1,
                     step: int = STEP) -> tuple[np.ndarray, np.ndarray]:
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
  return fit_from_moments(
      block_moments(target, guide, both, step)[:, :, 0], target, guide, both, radius, eps, min_support, step)


def fit_from_moments(moments: np.ndarray,
                     target: np.ndarray,
                     guide: np.ndarray,
                     both: np.ndarray,
                     radius: int = GUIDE_RADIUS,
                     eps: float = 1e-4,
                     min_support: float = 0.1,
                     step: int = STEP) -> tuple[np.ndarray, np.ndarray]:
  """:func:`local_regression`'s ``(A, b)`` from the :func:`block_moments`
  ``[hb, wb, M]`` of the pixels ``both`` (the rest as there)."""
  cg, ct = guide.shape[2], target.shape[2]
  coef = _coefficients(moments, cg, ct, radius, eps, min_support, step)
  if coef is None:
    return _fallback(target, guide, both)
  return _full_resolution(coef, target.shape[:2], cg, ct, step)


def block_moments(target: np.ndarray,
                  guide: np.ndarray,
                  both: np.ndarray,
                  step: int,
                  labels: Optional[np.ndarray] = None,
                  k: int = 1) -> np.ndarray:
  """Sums over ``step``-square blocks of the regression's moments, per label.

  Over the pixels known in both (and, with ``labels``, of each label
  ``0 … k-1`` separately, all labels in one pass): the count, ``Σ g_i``,
  ``Σ t_j``, ``Σ g_i g_j`` (``i <= j``) and ``Σ g_i t_j``.

  Returns:
    ``[ceil(H/step), ceil(W/step), k, M]`` float32, ``M = 1 + Cg + Ct +
    Cg(Cg+1)/2 + Cg·Ct`` in that order (accumulated in float64).
  """
  h, w = both.shape
  hb, wb = -(-h // step), -(-w // step)
  ys, xs = np.nonzero(both)
  idx = (ys // step) * wb + (xs // step)
  if labels is not None:
    idx = idx * k + labels[ys, xs]
  g, t = guide[ys, xs], target[ys, xs]
  cg, ct = g.shape[1], t.shape[1]
  chans = [None] + [g[:, i] for i in range(cg)] + [t[:, j] for j in range(ct)]
  chans += [g[:, i] * g[:, j] for i in range(cg) for j in range(i, cg)]
  chans += [g[:, i] * t[:, j] for i in range(cg) for j in range(ct)]
  size = hb * wb * k
  out = np.stack([np.bincount(idx, weights=c, minlength=size) for c in chans], axis=-1)
  return out.reshape(hb, wb, k, len(chans)).astype(np.float32)


def _coefficients(moments: np.ndarray, cg: int, ct: int, radius: int, eps: float, min_support: float,
                  step: int) -> Optional[np.ndarray]:
  """The coarse grid's regression coefficients from :func:`block_moments`
  ``[hb, wb, M]``: ``[hb, wb, Cg·Ct + Ct]`` (``A`` flattened, then ``b``),
  or None where no square has enough support."""
  r = max(1, int(round(radius / step)))
  sums = box_sum(moments, r)  # Every moment in one pass (box_sum works channel by channel: the same values).
  n = sums[..., 0]
  ok = n >= min_support * float((2 * r + 1) * step)**2
  if not ok.any():
    return None
  nn = np.maximum(n, 1e-6)
  box = lambda i: sums[..., i] / nn  # noqa: E731  (a local mean)
  mg = np.stack([box(1 + i) for i in range(cg)], -1)
  mt = np.stack([box(1 + cg + j) for j in range(ct)], -1)
  hl, wl = n.shape
  gg = np.empty((hl, wl, cg, cg), np.float32)
  c = 1 + cg + ct
  for i in range(cg):
    for j in range(i, cg):
      gg[..., i, j] = gg[..., j, i] = box(c) - mg[..., i] * mg[..., j]
      c += 1
  gt = np.empty((hl, wl, cg, ct), np.float32)
  for i in range(cg):
    for j in range(ct):
      gt[..., i, j] = box(c) - mg[..., i] * mt[..., j]
      c += 1
  a = np.linalg.solve(gg + np.float32(eps) * np.eye(cg, dtype=np.float32), gt).astype(np.float32)
  b = mt - np.einsum("hwk,hwkc->hwc", mg, a)
  okf = ok.astype(np.float32)
  coef = np.concatenate([a.reshape(hl, wl, cg * ct), b], axis=-1)
  coef = push_pull(coef * okf[..., None], okf)
  ones = box_sum(np.ones((hl, wl), np.float32), r)[..., None]
  return box_sum(coef, r) / ones


def _full_resolution(coef: np.ndarray, shape: tuple[int, int], cg: int, ct: int,
                     step: int) -> tuple[np.ndarray, np.ndarray]:
  """:func:`_coefficients` interpolated onto the pixels: ``(A [H, W, Cg, Ct], b [H, W, Ct])``."""
  h, w = shape
  coef = _upsample(coef, shape, step)
  return coef[..., :cg * ct].reshape(h, w, cg, ct), np.ascontiguousarray(coef[..., cg * ct:])


def _fallback(target: np.ndarray, guide: np.ndarray, both: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """No square with enough support: one global per-band fit (``Cg == Ct``) or the target's mean."""
  h, w, ct = target.shape
  cg = guide.shape[2]
  a = np.zeros((h, w, cg, ct), np.float32)
  if cg == ct:
    g1, o1 = linear_fit(target, guide, both)
    a[..., np.arange(ct), np.arange(ct)] = g1
    return a, np.broadcast_to(o1, (h, w, ct)).copy()
  mean = target[both].mean(0) if both.any() else np.zeros(ct, np.float32)
  return a, np.broadcast_to(mean.astype(np.float32), (h, w, ct)).copy()


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

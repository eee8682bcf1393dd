"""The issue's classical guided fills (:mod:`benchmarks.guided`): the guide copied in, a
per-band linear fit, and that fit plus its residual interpolated into the hole by GDAL."""

from __future__ import annotations

import numpy as np

from benchmarks import runner

# Side of the held-out windows (pixels).
SIZE = 256


def _gdal(values: np.ndarray, known: np.ndarray) -> np.ndarray:
  return runner.gdal_fill(values, known, max_search_distance=2 * SIZE) if (~known).any() else values


def linear_fit(target: np.ndarray, guide: np.ndarray, both: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-band least squares ``target ≈ a·guide + b`` over ``both``; ``(a [C], b [C])``.

  Fewer than 16 shared pixels or a flat guide band: ``a = 0``, ``b`` = the
  target's mean (or 0.5 with no shared pixel).
  """
  c = target.shape[-1]
  a, b = np.zeros(c), np.full(c, 0.5)
  if both.sum() < 16:
    if both.any():
      b = target[both].mean(0)
    return a, b
  t, g = target[both].astype(np.float64), guide[both].astype(np.float64)
  for i in range(c):
    var = g[:, i].var()
    if var > 1e-12:
      a[i] = np.cov(g[:, i], t[:, i], bias=True)[0, 1] / var
    b[i] = t[:, i].mean() - a[i] * g[:, i].mean()
  return a, b


def _finish(est: np.ndarray, have: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Composite ``est`` into the hole; hole pixels without an estimate filled by GDAL from the rest."""
  out = np.where(mask[..., None], est, target).astype(np.float32)
  missing = mask & ~have
  if missing.any():
    out = np.where(missing[..., None], _gdal(out, ~missing), out)
  return out


def guide_copy(c: dict) -> np.ndarray:
  return _finish(c["guide_image"], ~c["guide_mask"], c["image"], c["mask"])


def guide_linear(c: dict, residual: bool = False) -> np.ndarray:
  t, g, m, gm = c["image"], c["guide_image"], c["mask"], c["guide_mask"]
  both = ~m & ~gm
  a, b = linear_fit(t, g, both)
  mapped = g * a + b
  if residual and both.any():
    resid = _gdal(np.where(both[..., None], t - mapped, 0).astype(np.float32), both)
    mapped = mapped + resid
  return _finish(mapped, ~gm, t, m)

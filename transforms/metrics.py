"""Per-tile quality metrics.

Always: mask coverage, number and size of holes, and a seam score. With a
truth (``--reference`` or ``--evaluate``): PSNR, SSIM, MAE and spectral angle
over the missing pixels, so figures are normalised by the mask count.
All values are computed on the 0…1 scale the model sees.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from scipy import ndimage

_FOUR = ndimage.generate_binary_structure(2, 1)


def hole_stats(mask: np.ndarray) -> dict[str, Any]:
  """Coverage and the connected holes (4-connectivity) of a mask."""
  labels, n = ndimage.label(mask, structure=_FOUR)
  sizes = np.bincount(labels.ravel())[1:] if n else np.zeros(0, np.int64)
  return {
      "pixels": int(mask.size),
      "missing_pixels": int(mask.sum()),
      "coverage": float(mask.mean()),
      "holes": int(n),
      "largest_hole": int(sizes.max()) if n else 0,
      "mean_hole": float(sizes.mean()) if n else 0.0,
  }


def seam_score(unit: np.ndarray, mask: np.ndarray) -> Optional[float]:
  """Gradient jump across the mask boundary.

  The mean absolute step between a missing pixel and its known 4-neighbour,
  divided by the mean step between neighbouring known pixels next to the
  boundary. About 1 means the fill continues its surroundings; well above 1
  means a visible seam. None when there is no boundary.
  """
  img = unit.mean(axis=2) if unit.ndim == 3 else unit
  ring = ndimage.binary_dilation(mask, _FOUR, iterations=2) & ~mask
  across, inside = [], []
  for a_img, b_img, a_m, b_m, a_r, b_r in (
      (img[:, :-1], img[:, 1:], mask[:, :-1], mask[:, 1:], ring[:, :-1], ring[:, 1:]),
      (img[:-1, :], img[1:, :], mask[:-1, :], mask[1:, :], ring[:-1, :], ring[1:, :])):
    step = np.abs(a_img - b_img)
    across.append(step[a_m != b_m])
    inside.append(step[a_r & b_r])
  across_v, inside_v = np.concatenate(across), np.concatenate(inside)
  if across_v.size == 0 or inside_v.size == 0:
    return None
  return float(across_v.mean() / max(inside_v.mean(), 1e-6))


def _ssim_map(a: np.ndarray, b: np.ndarray, win: int = 7) -> np.ndarray:
  """SSIM map (Wang et al. 2004, uniform window) for data in 0…1."""
  c1, c2 = 0.01 ** 2, 0.03 ** 2
  f = lambda x: ndimage.uniform_filter(x, size=win, mode="reflect")  # noqa: E731
  mu_a, mu_b = f(a), f(b)
  var_a = f(a * a) - mu_a ** 2
  var_b = f(b * b) - mu_b ** 2
  cov = f(a * b) - mu_a * mu_b
  return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))


def quality(restored: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> dict[str, float]:
  """PSNR, MAE, SSIM and spectral angle over the missing pixels.

  Args:
    restored: ``[H, W, C]`` composited tile, 0…1 scale.
    truth: ``[H, W, C]`` truth, 0…1 scale.
    mask: ``[H, W]`` bool, True = missing (where figures are taken).
  """
  r = restored[mask].astype(np.float64)
  t = truth[mask].astype(np.float64)
  mse = float(np.mean((r - t) ** 2))
  out = {
      "psnr": float(10 * np.log10(1.0 / mse)) if mse > 0 else float("inf"),
      "mae": float(np.mean(np.abs(r - t))),
      "ssim": float(np.mean([_ssim_map(restored[:, :, c].astype(np.float32),
                                       truth[:, :, c].astype(np.float32))[mask].mean(dtype=np.float64)
                             for c in range(restored.shape[2])])),
  }
  if restored.shape[2] > 1:
    cos = np.sum(r * t, axis=1) / np.maximum(np.linalg.norm(r, axis=1) * np.linalg.norm(t, axis=1), 1e-12)
    out["spectral_angle_deg"] = float(np.degrees(np.mean(np.arccos(np.clip(cos, -1.0, 1.0)))))
  return out

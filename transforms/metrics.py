"""Per-tile quality metrics.

Always: mask coverage, number and size of holes, a seam score and (given the
window grid) a block score. With a
truth (``--reference`` or ``--evaluate``): PSNR, SSIM, MAE and spectral angle
over the missing pixels, so figures are normalised by the mask count.
All values are computed on the 0…1 scale the model sees.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
from scipy import ndimage

from transforms.tiling import positions

_FOUR = ndimage.generate_binary_structure(2, 1)

# Rows of labels counted at a time: np.bincount casts its input to int64, so
# counting a streamed scene's labels at once (8000² int32, 256 MB) made a 512 MB
# copy, the peak of a whole 8000² run (stop 26). By rows, the same counts.
_COUNT_ROWS = 512


def hole_stats(mask: np.ndarray) -> dict[str, Any]:
  """Coverage and the connected holes (4-connectivity) of a mask."""
  labels, n = ndimage.label(mask, structure=_FOUR)
  sizes = np.zeros(n + 1, np.int64)
  for r0 in range(0, labels.shape[0], _COUNT_ROWS):
    sizes += np.bincount(labels[r0:r0 + _COUNT_ROWS].ravel(), minlength=n + 1)
  sizes = sizes[1:]
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
  rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
  if rows.size == 0:
    return None  # No missing pixel: no boundary.
  # Only the mask's bounding box and 3 pixels around it hold a step counted
  # below (the ring is 2 deep); cut to it, the same steps come in the same
  # order, so the same means.
  y0, y1 = max(0, rows[0] - 3), min(mask.shape[0], rows[-1] + 4)
  x0, x1 = max(0, cols[0] - 3), min(mask.shape[1], cols[-1] + 4)
  unit, mask = unit[y0:y1, x0:x1], mask[y0:y1, x0:x1]
  img = unit.mean(axis=2) if unit.ndim == 3 else unit
  ring = ndimage.binary_dilation(mask, _FOUR, iterations=2) & ~mask
  across, inside = [], []
  for a_img, b_img, a_m, b_m, a_r, b_r in ((img[:, :-1], img[:, 1:], mask[:, :-1], mask[:, 1:], ring[:, :-1],
                                            ring[:, 1:]), (img[:-1, :], img[1:, :], mask[:-1, :], mask[1:, :],
                                                           ring[:-1, :], ring[1:, :])):
    step = np.abs(a_img - b_img)
    across.append(step[a_m != b_m])
    inside.append(step[a_r & b_r])
  across_v, inside_v = np.concatenate(across), np.concatenate(inside)
  if across_v.size == 0 or inside_v.size == 0:
    return None
  return float(across_v.mean() / max(inside_v.mean(), 1e-6))


def window_borders(length: int, size: int, stride: int) -> list[tuple[int, int]]:
  """Blend zones between consecutive windows along one axis.

  Each zone is ``(a, b)``: ``a`` the next window's start, ``b`` the previous
  window's end (clipped to ``length``); both windows contribute to pixels
  ``[a, b)`` (feathered), and ``a == b`` when windows only touch.

  >>> window_borders(600, 256, 224)
  [(224, 256), (344, 480)]
  """
  starts = positions(length, size, stride)
  return [(s1, min(s0 + size, length)) for s0, s1 in zip(starts, starts[1:])]


BlockSteps = dict[tuple[str, int], list[float]]
"""``{("across" | "else", lag): [sum of steps, count]}``, see :func:`block_steps`."""


def _axis_steps(img: np.ndarray, mask: np.ndarray, zones: Sequence[tuple[int, int]], out: BlockSteps) -> None:
  """Adds the steps along axis 0 of ``img [L, M, C]`` / ``mask [L, M]`` to ``out``."""
  length = img.shape[0]
  in_zone = np.zeros(length + 1, np.int64)  # in_zone[k]: step k (between k-1 and k) is in a zone
  for a, b in zones:
    in_zone[max(a, 1):min(b, length - 1) + 1] = 1
  cum = np.cumsum(in_zone)

  def add(key, lo, hi):
    both = mask[lo] & mask[hi]
    if both.any():
      step = np.abs(img[hi][both] - img[lo][both]).mean(axis=-1)
      acc = out.setdefault(key, [0.0, 0])
      acc[0] += float(step.sum())
      acc[1] += int(step.size)

  for a, b in zones:
    lo, hi, lag = a - 1, b, b - a + 1
    if lo < 0 or hi >= length:
      continue
    add(("across", lag), lo, hi)
    # The control: the same pair shifted by one and two lags either way (same
    # rows, same neighbourhood), where that spans no blend zone.
    for d in (-2 * lag, -lag, lag, 2 * lag):
      if 0 <= lo + d and hi + d < length and cum[hi + d] - cum[lo + d] == 0:
        add(("else", lag), lo + d, hi + d)


def block_steps(unit: np.ndarray,
                mask: np.ndarray,
                size: int,
                stride: int,
                origin: tuple[int, int] = (0, 0),
                full_shape: Optional[tuple[int, int]] = None,
                out: Optional[BlockSteps] = None) -> BlockSteps:
  """Sums of steps across window borders and elsewhere inside holes.

  A *step across a border* is the absolute difference (mean over bands)
  between the two pixels just outside a blend zone (:func:`window_borders`),
  both missing: for feathered windows it spans the whole zone, so a tone
  change that the feathering spreads over the overlap still counts in full.
  The steps *elsewhere* are its local control: the same pair of pixels
  shifted along the axis by one and two zone widths either way (inside the
  windows, same rows or columns, same neighbourhood), both missing, spanning
  no blend zone. Comparing each border with its own neighbourhood keeps the
  ratio near 1 for any seamless fill, smooth or textured, wherever the grid
  lines happen to cross the clouds.

  Args:
    unit: ``[h, W, C]`` (or ``[h, W]``) restored values, 0…1 scale.
    mask: ``[h, W]`` bool, True = missing.
    size: Window side (the model card's ``window``).
    stride: Window step, ``size - overlap``.
    origin: ``(row, col)`` of ``unit``'s first pixel in the tile or scene (a
      stripe of a streamed scene); steps that leave ``unit`` are not counted.
    full_shape: ``(H, W)`` of the whole tile or scene whose window grid
      applies; default: ``unit``'s own.
    out: Sums to add to (several stripes of one scene).

  Returns:
    ``out`` (or a new dict) with the sums added; see :func:`block_score`.
  """
  img = unit[..., None] if unit.ndim == 2 else unit
  img = img.astype(np.float32, copy=False)
  out = {} if out is None else out
  h, w = mask.shape
  full_h, full_w = full_shape or (h, w)
  y0, x0 = origin
  for axis, (full, off, span) in enumerate(((full_h, y0, h), (full_w, x0, w))):
    zones = [(a - off, b - off) for a, b in window_borders(full, size, stride) if a - 1 - off >= 0 and b - off < span]
    if not zones:
      continue
    if axis == 0:
      _axis_steps(img, mask, zones, out)
    else:
      _axis_steps(np.swapaxes(img, 0, 1), mask.T, zones, out)
  return out


def block_ratio(steps: BlockSteps) -> Optional[float]:
  """Mean step across window borders ÷ mean step of their local controls.

  About 1 when the fill is seamless; well above 1 when windows show as
  blocks of different tones. None without a border inside holes.
  """
  across_sum = across_n = expect = 0.0
  for (kind, lag), (total, n) in steps.items():
    other = steps.get(("else", lag))
    if kind != "across" or not n or not other or not other[1]:
      continue
    across_sum += total
    across_n += n
    expect += n * other[0] / other[1]
  if not across_n:
    return None
  return float(across_sum / max(expect, 1e-6 * across_n))


def block_score(unit: np.ndarray, mask: np.ndarray, size: int, overlap: int) -> Optional[float]:
  """The block metric of one tile restored with ``size`` windows overlapping by ``overlap``.

  See :func:`block_steps` and :func:`block_ratio`. None when no window
  border crosses a hole (a tile of one window).
  """
  return block_ratio(block_steps(unit, mask, size, size - overlap))


def block_controls(unit: np.ndarray, mask: np.ndarray, size: int, overlap: int, n: int = 5) -> list[float]:
  """The block metric on window grids that no window used: its spread without blocks.

  The grid is shifted by ``k / (n + 1)`` of the stride along both axes
  (``k = 1…n``), so its lines run through the middle of the real windows.
  On a fill without window structure the real grid's :func:`block_score`
  is one more draw from these; blocks put it above all of them. On small
  scenes, where few borders cross a hole, the draws spread widely (0.5–1.4
  on an 800² scene): compare with them before reading 1.2 as blocks.

  Returns:
    The scores of the shifted grids that cross a hole (fewer than ``n`` when
    some cross none).
  """
  stride = size - overlap
  out = []
  for k in range(1, n + 1):
    s = int(round(k * stride / (n + 1)))
    score = block_score(unit[s:, s:], mask[s:, s:], size, overlap)
    if score is not None:
      out.append(score)
  return out


def _ssim_map(a: np.ndarray, b: np.ndarray, win: int = 7) -> np.ndarray:
  """SSIM map (Wang et al. 2004, uniform window) for data in 0…1."""
  c1, c2 = 0.01**2, 0.03**2
  f = lambda x: ndimage.uniform_filter(x, size=win, mode="reflect")  # noqa: E731
  mu_a, mu_b = f(a), f(b)
  var_a = f(a * a) - mu_a**2
  var_b = f(b * b) - mu_b**2
  cov = f(a * b) - mu_a * mu_b
  return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


def quality(restored: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> dict[str, float]:
  """PSNR, MAE, SSIM and spectral angle over the missing pixels.

  Args:
    restored: ``[H, W, C]`` composited tile, 0…1 scale.
    truth: ``[H, W, C]`` truth, 0…1 scale.
    mask: ``[H, W]`` bool, True = missing (where figures are taken).
  """
  r = restored[mask].astype(np.float64)
  t = truth[mask].astype(np.float64)
  mse = float(np.mean((r - t)**2))
  out = {
      "psnr":
          float(10 * np.log10(1.0 / mse)) if mse > 0 else float("inf"),
      "mae":
          float(np.mean(np.abs(r - t))),
      "ssim":
          float(
              np.mean([
                  _ssim_map(restored[:, :, c].astype(np.float32),
                            truth[:, :, c].astype(np.float32))[mask].mean(dtype=np.float64)
                  for c in range(restored.shape[2])
              ])),
  }
  if restored.shape[2] > 1:
    cos = np.sum(r * t, axis=1) / np.maximum(np.linalg.norm(r, axis=1) * np.linalg.norm(t, axis=1), 1e-12)
    out["spectral_angle_deg"] = float(np.degrees(np.mean(np.arccos(np.clip(cos, -1.0, 1.0)))))
  return out

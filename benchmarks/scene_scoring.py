"""Scoring the whole-scene benchmark (:mod:`benchmarks.scenes`): the scene's
stretch, hole figures, flat patches, the results table, and the before /
cloudfill / GDAL / truth panel."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from transforms import metrics


def scene_scale(truth: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-band ``(lo, hi)``: 0.1 and 99.9 percentiles of the valid truth pixels."""
  v = truth[valid].astype(np.float64)
  return np.percentile(v, 0.1, axis=0), np.percentile(v, 99.9, axis=0)


def flat_pixels(img: np.ndarray, hole: np.ndarray, size: int = 15) -> int:
  """Hole pixels at the centre of a ``size``² patch of hole pixels with every band constant."""
  inside = ndimage.minimum_filter(hole.astype(np.uint8), size=size) > 0
  flat = inside.copy()
  for c in range(img.shape[-1]):
    band = img[..., c].astype(np.float32)
    flat &= ndimage.maximum_filter(band, size=size) == ndimage.minimum_filter(band, size=size)
  return int(flat.sum())


def score(out: np.ndarray, truth: np.ndarray, given: np.ndarray, hole: np.ndarray, valid: np.ndarray, lo: np.ndarray,
          hi: np.ndarray, vrange: tuple[float, float], window: tuple[int, int]) -> dict:
  """The figures of one method's output (``[H, W, C]`` in the input's dtype)."""
  unit = ((out.astype(np.float64) - lo) / (hi - lo)).astype(np.float32)
  unit_t = ((truth.astype(np.float64) - lo) / (hi - lo)).astype(np.float32)
  q = metrics.quality(unit, unit_t, hole)
  d = (out[hole].astype(np.float64) - truth[hole]) / (vrange[1] - vrange[0])
  mse_v = float(np.mean(d**2))
  keep = ~hole & valid
  nodata = ~valid
  return {
      "hole_psnr": q["psnr"],
      "hole_ssim": q["ssim"],
      "hole_mae": q["mae"],
      "hole_psnr_value_range": float(10 * np.log10(1 / mse_v)) if mse_v > 0 else float("inf"),
      "block": metrics.block_score(unit, hole, *window),
      # The same metric on grids no window used: how far it strays without blocks.
      "block_shifted_grids": metrics.block_controls(unit, hole, *window),
      "seam": metrics.seam_score(unit, hole),
      "hole_zero_pixels": int((out[hole] == 0).all(-1).sum()),
      "hole_flat15_pixels": flat_pixels(out, hole),
      "hole_left_as_cloud": int((out[hole] == given[hole]).all(-1).sum()),
      "known_identical": bool(np.array_equal(out[keep], given[keep])),
      "nodata_identical": bool(np.array_equal(out[nodata], given[nodata])),
      "nodata_changed_pixels": int((out[nodata] != given[nodata]).any(-1).sum()),
  }


def panel(path: str, given, filled, gdal, truth, clouds, valid, lo, hi, bgr: bool = False, width: int = 640) -> None:
  """before (clouds white) | cloudfill | GDAL FillNodata | truth, each ``width`` px wide.

  ``bgr``: the first three bands are blue, green, red (Landsat 8 B2, B3, B4).
  """
  from PIL import Image, ImageDraw  # pylint: disable=import-outside-toplevel
  rows = []
  for label, img in (("before", given), ("cloudfill", filled), ("GDAL FillNodata", gdal), ("truth", truth)):
    u = np.clip((img[..., :3].astype(np.float64) - lo[:3]) / (hi[:3] - lo[:3]), 0, 1)
    u = np.ascontiguousarray(u)
    if bgr:
      u = u[..., ::-1]
    if label == "before":
      u[clouds & valid] = 1.0
    u[~valid] = 0.0
    im = Image.fromarray((u * 255).astype(np.uint8))
    im = im.resize((width, int(round(width * img.shape[0] / img.shape[1]))), Image.BILINEAR)
    ImageDraw.Draw(im).text((6, 4), label, fill=(255, 255, 0))
    rows.append(np.asarray(im))
  sep = np.full((rows[0].shape[0], 6, 3), 255, np.uint8)
  Image.fromarray(np.concatenate([rows[0], sep, rows[1], sep, rows[2], sep, rows[3]], 1)).save(path)


LABELS = {"cloudfill": "cloudfill", "gdal": "gdal", "context": "push-pull, whole scene"}


def markdown(rows: list[dict], header: str) -> str:
  lines = [
      header, "", "| scene | size | clouds | max dist px | method | hole PSNR dB (scene scale) | PSNR dB (value range) "
      "| SSIM | block (truth) | block, shifted grids | seam | hole px at 0 | flat 15² px (truth) | known / no-data identical | seconds |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  ]
  fmt = lambda v, f: "–" if v is None else format(v, f)  # noqa: E731
  spread = lambda v: f"{min(v):.2f}–{max(v):.2f}" if v else "–"  # noqa: E731
  for r in rows:
    for meth in ("cloudfill", "gdal", "context"):
      m = r.get(meth)
      if m is None:  # a results file from before the context row
        continue
      if "error" in m:
        lines.append(f"| {r['scene']} | | | | {meth} | {m['error']} | | | | | | | | | |")
        continue
      lines.append(
          f"| {r['scene']} | {r['shape'][1]}×{r['shape'][0]} | {r['cloud_coverage_of_valid']:.0%} "
          f"| {r['max_distance_to_known_px']:.0f} | {LABELS[meth]} | {m['hole_psnr']:.2f} | {m['hole_psnr_value_range']:.2f} "
          f"| {m['hole_ssim']:.3f} | {fmt(m['block'], '.2f')} ({fmt(r['truth_block'], '.2f')}) | {spread(m.get('block_shifted_grids'))} | {fmt(m['seam'], '.2f')} | {m['hole_zero_pixels']} "
          f"| {m['hole_flat15_pixels']} ({r['truth_flat15_pixels']}) "
          f"| {'yes' if m['known_identical'] else 'NO'} / "
          f"{'yes' if m['nodata_identical'] else 'NO: %d px changed' % m.get('nodata_changed_pixels', -1)} "
          f"| {r[meth + '_seconds']:.0f} |")
  return "\n".join(lines) + "\n"

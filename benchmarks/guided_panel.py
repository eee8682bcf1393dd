"""The guided benchmark's picture (:mod:`benchmarks.guided`): one window, before / guide /
methods / truth, chosen as the median gain of a bucket, not the best one."""

from __future__ import annotations

import numpy as np


def panel(path: str, c: dict, outputs: dict[str, np.ndarray], side: int = 256) -> None:
  """before (holes white) | guide (its clouds white) | each of ``outputs`` | truth, one window.

  Stretched per band between the 1st and 99th percentiles of the truth.
  """
  from PIL import Image, ImageDraw  # pylint: disable=import-outside-toplevel
  truth = c["image"][..., :3]
  lo, hi = np.percentile(truth, 1, axis=(0, 1)), np.percentile(truth, 99, axis=(0, 1))
  before = np.where(c["mask"][..., None], 1e9, truth)
  guide = np.where(c["guide_mask"][..., None], 1e9, c["guide_image"][..., :3])
  tiles = [("before", before), ("guide date", guide)] + list(outputs.items()) + [("truth", truth)]
  row = []
  for label, img in tiles:
    u = np.clip((img[..., :3] - lo) / np.maximum(hi - lo, 1e-6), 0, 1)
    im = Image.fromarray((u * 255).astype(np.uint8)).resize((side, side), Image.BILINEAR)
    ImageDraw.Draw(im).text((5, 3), label, fill=(255, 255, 0))
    row += [np.asarray(im), np.full((side, 4, 3), 255, np.uint8)]
  Image.fromarray(np.concatenate(row[:-1], 1)).save(path)


def median_gain_case(cases: list, bucket: str, better: str, worse: str) -> dict:
  """The case of ``bucket`` whose hole PSNR gain of ``better`` over ``worse`` is the median one."""
  pool = sorted((c for c in cases if c["bucket"] == bucket),
                key=lambda c: c["metrics"][better]["hole_psnr"] - c["metrics"][worse]["hole_psnr"])
  return pool[len(pool) // 2]

"""Two ideas for a better unguided context, measured and not adopted (issue 8).

cloudfill's unguided context is the push-pull fill
(:func:`transforms.context.push_pull`), and on whole scenes it leads GDAL
FillNodata by most of cloudfill's margin; on one Sentinel-2 draw GDAL wins
(a river its directional search carries across the clouds). Two variants,
each on the same cases as the shipped benchmarks:

* ``blend α``: ``α · push-pull + (1 − α) · GDAL FillNodata`` (do the two
  fills' errors cancel?), on the scenes and clouds of :mod:`benchmarks.scenes`
  (seeds 8, 9, 10; the 3000² reflected scene left out) and on the 48 held-out
  256² tiles of :mod:`benchmarks.quality`;
* ``smoothed σ, λ``: push-pull of the known ground low-passed (Gaussian σ px,
  normalised over known pixels), plus the unsmoothed fill's detail fading as
  ``exp(−d / λ)`` with ``d`` the distance to known ground (does a boundary
  pixel's own texture leak into the hole?), on the 48 tiles.

Hole PSNR in dB: on each scene's 0.1–99.9 percentile stretch
(:func:`benchmarks.scene_scoring.scene_scale`) for scenes, on the tiles'
0…1 scale for tiles. Prints Markdown; ``--out`` also writes it.

Run::

  python -m benchmarks.context_variants [--out benchmarks/results/scenes/context_variants.md]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from scipy import ndimage

from benchmarks import common
from benchmarks.fillers import gdal_fillnodata
from benchmarks.interpolants import gdal_scene_fill, hole_psnr, scene_draw
from benchmarks.quality import make_cases
from transforms.context import push_pull
from transforms.scaling import from_unit, to_unit

ALPHAS = (0.25, 0.5, 0.75)
SMOOTHING = ((1, 0), (1, 5), (2, 0), (2, 5), (4, 5))  # (σ, λ); λ = 0: the smoothed fill alone


def scene_row(name: str, seed: int, data: str, coverage: float = 0.34) -> list[float]:
  """GDAL, then each blend, then push-pull: hole PSNR on the scene scale."""
  d = scene_draw(name, seed, data, coverage)
  unit = to_unit(np.where(d.known[..., None], d.truth, 0), *d.vrange)
  pp = from_unit(push_pull(unit, d.known.astype(np.float32)), *d.vrange)
  gdal = gdal_scene_fill(d).astype(np.float32)
  fills = [gdal] + [a * pp + (1 - a) * gdal for a in ALPHAS] + [pp]
  return [hole_psnr(f, d.truth, d.hole, d.lo, d.hi) for f in fills]


def smoothed_fill(base: np.ndarray, known: np.ndarray, sigma: float) -> np.ndarray:
  """Push-pull of the known pixels low-passed by a Gaussian (normalised over known pixels)."""
  k = known.astype(np.float32)
  num = np.stack([ndimage.gaussian_filter(base[..., c] * k, sigma) for c in range(base.shape[-1])], -1)
  den = ndimage.gaussian_filter(k, sigma)[..., None]
  low = np.where(den > 1e-3, num / np.maximum(den, 1e-6), 0.0) * k[..., None]
  return push_pull(low.astype(np.float32), k)


def tile_row(image: np.ndarray, mask: np.ndarray) -> list[float]:
  """GDAL, each blend, push-pull, then each smoothing: hole PSNR on 0…1."""
  img, known = image.astype(np.float32), ~mask
  base = img * known[..., None]
  pp = push_pull(base, known.astype(np.float32))
  gdal = gdal_fillnodata(img, mask)
  dist = ndimage.distance_transform_edt(mask)[..., None]
  fills = [gdal] + [a * pp + (1 - a) * gdal for a in ALPHAS] + [pp]
  for sigma, lam in SMOOTHING:
    low = smoothed_fill(base, known, sigma)
    fills.append(low + (np.exp(-dist / lam) if lam else 0.0) * (pp - low))
  return [float(-10 * np.log10(np.mean((f[mask] - img[mask])**2))) for f in fills]


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
  p.add_argument("--data", default=common.SHARED)
  p.add_argument("--out", default=None)
  p.add_argument("--seeds", default="8,9,10")
  args = p.parse_args(argv)
  if not os.path.isdir(args.data):
    p.error(f"data folder {args.data} is absent")
  env = common.machine()
  blends = [f"blend {a:g}" for a in ALPHAS]
  lines = [
      f"Context variants (`python -m benchmarks.context_variants`), {env['cpu_model']}, {env['cpus_usable']} cores. "
      "Δ dB of hole PSNR over GDAL FillNodata; blend α = α · push-pull + (1 − α) · GDAL.", "",
      "| scene | seed | " + " | ".join(blends) + " | push-pull |", "|---|---|" + "---|" * (len(blends) + 1)
  ]
  for seed in (int(s) for s in args.seeds.split(",")):
    for name in ("landsat8", "naip2019", "s2l2a_june", "landsat5_nanjing"):
      r = scene_row(name, seed, args.data)
      lines.append(f"| {name} | {seed} | " + " | ".join(f"{v - r[0]:+.2f}" for v in r[1:]) + " |")
      common.log(lines[-1])
  smooth = [f"smoothed σ {s:g}" + (f", λ {lam:g}" if lam else "") for s, lam in SMOOTHING]
  cols = ["GDAL"] + blends + ["push-pull"] + smooth
  rows: dict[str, list] = {}
  for case in make_cases(args.data, 3, 256, 8, 2024):
    rows.setdefault(case["bucket"], []).append(tile_row(case["image"], case["mask"]))
  lines += [
      "", "48 held-out 256² tiles (`benchmarks.quality`'s cases, seed 2024), hole PSNR dB by coverage bucket:", "",
      "| bucket | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)
  ]
  for bucket, r in list(rows.items()) + [("all", [x for v in rows.values() for x in v])]:
    lines.append(f"| {bucket} | " + " | ".join(f"{v:.2f}" for v in np.mean(r, 0)) + " |")
  text = "\n".join(lines) + "\n"
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      f.write(text)
  print(text)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())

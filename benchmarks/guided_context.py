"""The guided context's own figures: how a guide date is best mapped.

Scores, on two-date 256² windows of the held-out strips of the training
bundle under held-out real cloud masks, the hole PSNR (dB, 0…1 scale of the
bundle's per-scene stretch) of: no guide (push-pull), the guide copied in, a
global per-band linear fit, that fit plus its interpolated residual, and the
local per-band (guided-filter) fit plus residual, the local multivariate
regression (every band from all guide bands) plus residual at several radii,
and that regression fitted per spectral class of the guide — the choices
behind ``transforms.regression.guided_fill``, ``GUIDE_RADIUS`` and
``GUIDE_CLASSES``.
``--split train`` scores windows of the training strips instead (where the
radius was chosen).

  python -m benchmarks.guided_context --bundle runs/bundle/data.npz

(the bundle: ``python -m training.bundle --data ../shared/data --out runs/bundle/data.npz``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from training import bundle, data
from training.masks import MaskGenerator
from training.scenes import crop_origins
from transforms import context as ctx
from transforms import regression


def cases(path: str, size: int = 256, per_place: int = 6, seed: int = 0, split: str = "val"):
  scenes, clouds = bundle.load(path)
  places = [p for p in data.group_places(scenes) if len(p.scenes) > 1]
  masks = MaskGenerator(clouds["val" if split == "val" else "train"], weights={"clouds": 1.0})
  rng = np.random.default_rng(seed)
  out = []
  for p in places:
    valid = np.logical_and.reduce([s.valid for s in p.scenes])
    origins = crop_origins(valid, size, split, stride=size // 2)
    if split != "val":  # The training strips are large: a random sample of their windows.
      origins = [origins[i] for i in rng.permutation(len(origins))]
    for (y, x) in origins[:per_place]:
      for t in range(len(p.scenes)):
        g = (t + 1) % len(p.scenes)
        out.append((p.scenes[t].image[y:y + size, x:x + size, :3], p.scenes[g].image[y:y + size, x:x + size, :3],
                    masks.sample(rng, size, size) > 0.5))
  return out


def score(items, fn) -> tuple[float, float]:
  se = n = 0.0
  t0 = time.perf_counter()
  for target, guide, hole in items:
    out = fn(target, (~hole).astype(np.float32), guide)
    se += float(((out - target)[hole]**2).sum())
    n += float(hole.sum() * target.shape[-1])
  return 10 * np.log10(n / se), time.perf_counter() - t0


def per_band_fill(t: np.ndarray, v: np.ndarray, g: np.ndarray, radius: int = 32) -> np.ndarray:
  """The per-band local fit plus residual (the guided fill before the multivariate regression)."""
  both = v >= 1.0
  gain, offset = regression.local_linear_fit(t, g, both, radius)
  mapped = g * gain + offset
  resid = ctx.push_pull(np.where(both[..., None], t - mapped, 0.0), both.astype(np.float32))
  return np.where(both[..., None], t, mapped + resid)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--bundle", default="runs/bundle/data.npz")
  p.add_argument("--split", choices=("val", "train"), default="val")
  a = p.parse_args(argv)
  items = cases(a.bundle, split=a.split)
  ones = lambda v: np.ones_like(v)  # noqa: E731
  methods = {
      "no guide (push_pull)": lambda t, v, g: ctx.push_pull(t, v),
      "guide copied": lambda t, v, g: g,
      "global fit": lambda t, v, g: g * regression.linear_fit(t, g, v > 0)[0] + regression.linear_fit(t, g, v > 0)[1],
      "global fit + residual": lambda t, v, g: regression.guided_fill(t, v, g, ones(v), radius=0).fill,
  }
  methods["per-band local fit r=32 + residual"] = per_band_fill
  for r in (16, 32, 64, 96, 128):
    methods[f"local regression r={r} + residual"] = (
        lambda t, v, g, r=r: regression.guided_fill(t, v, g, ones(v), radius=r, classes=0).fill)
  for k in (4, 8, 16):
    methods[f"class-wise local regression r=64, {k} classes + residual"] = (
        lambda t, v, g, k=k: regression.guided_fill(t, v, g, ones(v), radius=64, classes=k).fill)
  print(f"{len(items)} two-date windows ({a.split} split)")
  print("| method | hole PSNR dB | seconds |\n|---|---|---|")
  for name, fn in methods.items():
    psnr, sec = score(items, fn)
    print(f"| {name} | {psnr:.2f} | {sec:.1f} |", flush=True)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())

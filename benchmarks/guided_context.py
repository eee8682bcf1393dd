"""The guided context's own figures: how a guide date is best mapped.

Scores, on two-date 256² windows of the held-out strips of the training
bundle under held-out real cloud masks, the hole PSNR (dB, 0…1 scale of the
bundle's per-scene stretch) of: no guide (push-pull), the guide copied in, a
global per-band linear fit, that fit plus its interpolated residual, and the
local (guided-filter) fit plus residual at several radii — the choice behind
``transforms.context.GUIDE_RADIUS``.

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


def cases(path: str, size: int = 256, per_place: int = 6, seed: int = 0):
  scenes, clouds = bundle.load(path)
  places = [p for p in data.group_places(scenes) if len(p.scenes) > 1]
  masks = MaskGenerator(clouds["val"], weights={"clouds": 1.0})
  rng = np.random.default_rng(seed)
  out = []
  for p in places:
    valid = np.logical_and.reduce([s.valid for s in p.scenes])
    for (y, x) in crop_origins(valid, size, "val", stride=size // 2)[:per_place]:
      for t in range(len(p.scenes)):
        g = (t + 1) % len(p.scenes)
        out.append((p.scenes[t].image[y:y + size, x:x + size, :3],
                    p.scenes[g].image[y:y + size, x:x + size, :3],
                    masks.sample(rng, size, size) > 0.5))
  return out


def score(items, fn) -> tuple[float, float]:
  se = n = 0.0
  t0 = time.perf_counter()
  for target, guide, hole in items:
    out = fn(target, (~hole).astype(np.float32), guide)
    se += float(((out - target)[hole] ** 2).sum())
    n += float(hole.sum() * target.shape[-1])
  return 10 * np.log10(n / se), time.perf_counter() - t0


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--bundle", default="runs/bundle/data.npz")
  a = p.parse_args(argv)
  items = cases(a.bundle)
  ones = lambda v: np.ones_like(v)  # noqa: E731
  methods = {
      "no guide (push_pull)": lambda t, v, g: ctx.push_pull(t, v),
      "guide copied": lambda t, v, g: g,
      "global fit": lambda t, v, g: g * ctx.linear_fit(t, g, v > 0)[0] + ctx.linear_fit(t, g, v > 0)[1],
      "global fit + residual": lambda t, v, g: ctx.guided_fill(t, v, g, ones(v), radius=0).fill,
  }
  for r in (4, 8, 16, 32):
    methods[f"local fit r={r} + residual"] = (
        lambda t, v, g, r=r: ctx.guided_fill(t, v, g, ones(v), radius=r).fill)
  print(f"{len(items)} two-date windows")
  print("| method | hole PSNR dB | seconds |\n|---|---|---|")
  for name, fn in methods.items():
    psnr, sec = score(items, fn)
    print(f"| {name} | {psnr:.2f} | {sec:.1f} |", flush=True)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())

"""A fill calibrated on the scene itself: can it close the unguided gap? (issue 8; measured, not adopted)

Unguided, cloudfill's lead over GDAL FillNodata on whole scenes comes from
its push-pull context, and it is short of +1 dB on every scene
(``benchmarks/results/scenes/seeds.md``). Far inside a large cloud any
interpolant of the border is a guess; the guess with the least squared error
shrinks toward a regional mean as the distance to known ground grows (as
kriging does). How much it should shrink is a property of the scene, and the
scene's own known ground can tell: hide known ground under clouds of the
same shapes, fill it, and fit.

Per scene draw of :mod:`benchmarks.scenes` (same scenes, seeds, clouds):

* features at every pixel: the push-pull fill ``pp``
  (:func:`transforms.context.push_pull`), regional means of the known
  ground (Gaussian σ 32 and 128 px, normalised over known pixels, then
  push-pulled where nothing known is near: ``m32``, ``m128``) and the
  scene's mean ``mg``;
* a linear combination of them with its own coefficients in each band of
  distance to known ground (0–4, 4–8, …, 256+ px), least squares pooled over
  the bands;
* **self-calibrated**: fitted on simulated holes, the real cloud mask rolled
  by (H/2, W/2) and by (H/3, −W/3), on known ground only, filled from the
  rest of the known ground; then applied to the real holes. Uses nothing the
  pipeline does not have;
* **oracle**: the same family fitted on the real holes against the truth:
  the best any such combination can do on that draw (a ceiling, not a method).

Hole PSNR on the scene scale (:func:`benchmarks.scene_scoring.scene_scale`),
as Δ dB over GDAL FillNodata (:func:`benchmarks.interpolants.gdal_scene_fill`).
The 3000² reflected scene is left out, as in :mod:`benchmarks.interpolants`.

Run::

  python -m benchmarks.self_calibrated [--seeds 8,9,10] [--out benchmarks/results/scenes/self_calibrated.md]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from scipy import ndimage

from benchmarks import common
from benchmarks.interpolants import gdal_scene_fill, hole_psnr, scene_draw
from transforms.context import push_pull
from transforms.scaling import from_unit, to_unit

SCENE_NAMES = ("landsat8", "naip2019", "s2l2a_june", "landsat5_nanjing")
EDGES = np.array([0, 4, 8, 16, 32, 64, 128, 256, np.inf])
FAMILIES = (("pp", "mg"), ("pp", "m128"), ("pp", "m32", "m128", "mg"))


def regional_mean(x: np.ndarray, known: np.ndarray, sigma: float) -> np.ndarray:
  """Gaussian mean of the known pixels (normalised over them), push-pulled where none is near."""
  k = known.astype(np.float32)
  den = ndimage.gaussian_filter(k, sigma)
  num = np.stack([ndimage.gaussian_filter(x[..., c] * k, sigma) for c in range(x.shape[-1])], -1)
  near = den > 1e-3
  mean = np.where(near[..., None], num / np.maximum(den, 1e-6)[..., None], 0.0).astype(np.float32)
  return push_pull(mean, near.astype(np.float32))


def features(x: np.ndarray, known: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
  """The features of the fill of ``x``'s ``known`` pixels, and each pixel's distance to known ground (px)."""
  base = np.where(known[..., None], x, 0.0).astype(np.float32)
  f = {"pp": push_pull(base, known.astype(np.float32)), "mg": np.broadcast_to(x[known].mean(0), x.shape)}
  for s in (32, 128):
    f[f"m{s}"] = regional_mean(base, known, s)
  return f, ndimage.distance_transform_edt(~known)


def design(f: dict[str, np.ndarray], names, sel: np.ndarray) -> np.ndarray:
  return np.stack([f[n][sel] for n in names], -1)  # [N, C, F]


def fit(parts, names) -> dict[int, np.ndarray]:
  """Per distance band, the least-squares coefficients over ``parts`` ``[(features, distance, sel, target)]``."""
  a = np.concatenate([design(f, names, s) for f, _, s, _ in parts])
  y = np.concatenate([t[s] for _, _, s, t in parts])
  b = np.concatenate([np.digitize(d[s], EDGES) - 1 for _, d, s, _ in parts])
  out = {}
  for i in range(len(EDGES) - 1):
    m = b == i
    if m.sum() >= 200:
      out[i] = np.linalg.lstsq(a[m].reshape(-1, len(names)), y[m].reshape(-1), rcond=None)[0]
  return out


def apply(f, d, sel, names, coefs) -> np.ndarray:
  """``f["pp"]`` with the combination put in at ``sel`` (a band without coefficients takes the nearest band's)."""
  out = f["pp"].copy()
  a, b = design(f, names, sel), np.digitize(d[sel], EDGES) - 1
  vals = out[sel]
  for i in np.unique(b):
    c = coefs[min(coefs, key=lambda j, i=i: abs(j - i))]
    vals[b == i] = a[b == i] @ c
  out[sel] = vals
  return out


def run_draw(name: str, seed: int, data: str) -> dict:
  """Δ dB over GDAL of push-pull and of each family, self-calibrated and oracle."""
  t0 = time.perf_counter()
  d = scene_draw(name, seed, data, 0.34)
  x = to_unit(d.truth, *d.vrange)
  f, dist = features(x, d.known)
  sims = []
  h, w = d.hole.shape
  for shift in ((h // 2, w // 2), (h // 3, -(w // 3))):
    s = np.roll(d.hole, shift, (0, 1)) & d.known
    fs, ds = features(x, d.known & ~s)
    sims.append((fs, ds, s, x))
  psnr = lambda fill: hole_psnr(from_unit(fill, *d.vrange), d.truth, d.hole, d.lo, d.hi)  # noqa: E731
  gdal = hole_psnr(gdal_scene_fill(d), d.truth, d.hole, d.lo, d.hi)
  row = {"scene": name, "seed": seed, "gdal_db": gdal, "push-pull": psnr(f["pp"]) - gdal}
  for names in FAMILIES:
    key = " + ".join(names)
    row[f"self-calibrated {key}"] = psnr(apply(f, dist, d.hole, names, fit(sims, names))) - gdal
    row[f"oracle {key}"] = psnr(apply(f, dist, d.hole, names, fit([(f, dist, d.hole, x)], names))) - gdal
  row["seconds"] = time.perf_counter() - t0
  shown = {k: v for k, v in row.items() if k not in ("scene", "seed", "gdal_db", "seconds")}
  common.log(f"{name} seed {seed} ({row['seconds']:.0f} s): " + ", ".join(f"{k} {v:+.2f}" for k, v in shown.items()))
  return row


def markdown(rows: list[dict], env: dict) -> str:
  cols = [k for k in rows[0] if k not in ("scene", "seed", "gdal_db", "seconds")]
  out = [
      f"Fills calibrated on the scene (`python -m benchmarks.self_calibrated`), {env['cpu_model']}, "
      f"{env['cpus_usable']} cores. Δ dB of hole PSNR over GDAL FillNodata, scene scale; 34 % cloud.", "",
      "| scene | seed | GDAL dB | " + " | ".join(cols) + " |", "|---|---|---|" + "---|" * len(cols)
  ]
  for r in rows:
    out.append(f"| {r['scene']} | {r['seed']} | {r['gdal_db']:.2f} | " + " | ".join(f"{r[c]:+.2f}" for c in cols) +
               " |")
  out += ["", "| | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
  for label, fn in (("mean", np.mean), ("worst", np.min)):
    out.append(f"| {label} | " + " | ".join(f"{fn([r[c] for r in rows]):+.2f}" for c in cols) + " |")
  return "\n".join(out) + "\n"


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
  p.add_argument("--seeds", default="8,9,10")
  p.add_argument("--scenes", default=",".join(SCENE_NAMES))
  p.add_argument("--data", default=common.SHARED)
  p.add_argument("--out", default=None, help="also write the Markdown table here")
  a = p.parse_args(argv)
  env = common.machine()
  rows = [run_draw(n, int(s), a.data) for s in a.seeds.split(",") for n in a.scenes.split(",")]
  text = markdown(rows, env)
  print(text)
  if a.out:
    with open(a.out, "w", encoding="utf-8") as f:
      f.write(text)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())

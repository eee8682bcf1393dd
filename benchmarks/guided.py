"""Guided restoration: another date of the same place as a second input (issue 10), per coverage bucket.

A two-date held-out set from ``../shared/data``: pairs (target, guide) of the
same place on two dates (:func:`date_pairs`: NAIP dates, Landsat composites
5 years apart, the Sentinel-2 L2A June/September pair, the Landsat 5 Nanjing
and Landsat 7 Taizhou pairs, the ImageFusion series), 256² windows inside the
*held-out strip* of each scene (:func:`training.scenes.crop_origins` with
``"val"``: the right-hand 25 % or 256 columns; scenes whose strip holds no
256² window are listed as skipped), holes from the held-out real cloud masks
per bucket 1–10 % … 50–60 % (as :mod:`benchmarks.quality`), and with
probability ``--guide-cloud-prob`` clouds on the guide too (5–30 %).
Both dates are scaled to 0…1 by :func:`training.scenes.read_scene`; a guide on
another grid (the NAIP dates are shifted by 1–3 m) is first resampled onto
the target's (:func:`aligned_guide`).

Methods (every one composited: known pixels kept):

* ``gdal_fillnodata``: GDAL FillNodata of the target alone (unguided);
* ``guide_copy``: the guide's pixels copied into the hole;
* ``guide_linear``: a per-band least-squares fit ``target ≈ a·guide + b``
  on pixels known on both dates, applied in the hole;
* ``guide_linear_residual``: that fit plus its residual interpolated into
  the hole by GDAL FillNodata;
* ``context_guided_fill``: the pipeline's own classical guided fill
  (:func:`transforms.regression.guided_fill`: fit + residual by push-pull), when
  that module exists;
* ``cloudfill_unguided``: the default model's ``restore`` on the target alone;
* ``cloudfill_guided``: the ``--model`` SavedModel's ``restore`` with ``guide``
  ``[N,H,W,C]`` 0…1 and ``guide_mask`` ``[N,H,W,1]`` (1 = missing), and
  ``context`` when its signature takes one (see :class:`ModelFiller`); left
  out, with a note, when the model takes no guide.

Where a guided method has no guide pixel (guide cloud), it falls back to GDAL
FillNodata of what it has. Scores: :func:`benchmarks.quality.tile_metrics`.

Run::

  python -m benchmarks.guided [--model GUIDED_SAVEDMODEL] [--per-bucket 8] \
      [--out benchmarks/results/guided]

Writes ``guided.json`` and ``guided.md``.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import sys
import time
from typing import Callable

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from benchmarks import common  # noqa: E402
from benchmarks.quality import BUCKETS, METRICS, bucket_name, tile_metrics  # noqa: E402
from training.masks import MaskGenerator, cloud_mask_files  # noqa: E402
from training.scenes import crop_origins, read_scene  # noqa: E402
from transforms import context, regression  # noqa: E402
# linear_fit is re-exported: the benchmark tests call guided.linear_fit.
from benchmarks.guided_methods import SIZE, _finish, _gdal, guide_copy, guide_linear, linear_fit  # noqa: E402,F401
from benchmarks.guided_panel import median_gain_case, panel  # noqa: E402


def date_pairs(data: str) -> list[tuple[str, str, str]]:
  """``(group, target, guide)`` paths: each date guided by the one before it (both ways for pairs)."""
  out = []

  def series(group, pattern, both_ways=False):
    files = sorted(glob.glob(os.path.join(data, pattern)))
    for a, b in zip(files, files[1:]):
      out.append((group, b, a))
      if both_ways:
        out.append((group, a, b))

  series("naip_5m", "naip_5m/m_4709963_se_14_1_*.tif")
  series("landsat_composites", "landsat_composites/landsat_pucallpa_*.tif")
  series("s2l2a", "multidate/s2l2a_T33UUP_*_RGBN.tif", both_ways=True)
  series("landsat5_nanjing", "multidate/landsat5_nanjing_*_6band.tif", both_ways=True)
  series("landsat7_taizhou", "multidate/landsat7_taizhou_*_6band.tif", both_ways=True)
  series("imagefusion", "multidate/landsat_imagefusion_2016doy*_4band.tif")
  return out


def aligned_guide(target_path: str, guide_path: str, bands: int):
  """The guide date resampled onto the target's grid (``WarpedVRT``, nearest), read as a scene.

  Dates of one place may sit on grids shifted by a fraction of a pixel (the
  NAIP dates: 1–3 m on 5 m pixels, 723 or 724 rows); pixels outside the
  guide's extent come out 0, i.e. no-data.
  """
  import rasterio  # pylint: disable=import-outside-toplevel
  from rasterio.io import MemoryFile  # pylint: disable=import-outside-toplevel
  from rasterio.vrt import WarpedVRT  # pylint: disable=import-outside-toplevel
  with rasterio.open(target_path) as t, rasterio.open(guide_path) as g:
    if g.crs is None or t.crs is None:
      return None
    with WarpedVRT(g, crs=t.crs, transform=t.transform, width=t.width, height=t.height) as vrt:
      data = vrt.read()
      profile = {
          "driver": "GTiff",
          "count": data.shape[0],
          "height": t.height,
          "width": t.width,
          "dtype": data.dtype,
          "crs": t.crs,
          "transform": t.transform
      }
  with MemoryFile() as mem:
    with mem.open(**profile) as dst:
      dst.write(data)
    return read_scene(mem.name, bands)


def _same_grid(a: str, b: str) -> bool:
  import rasterio  # pylint: disable=import-outside-toplevel
  with rasterio.open(a) as x, rasterio.open(b) as y:
    return x.crs == y.crs and x.transform == y.transform and x.shape == y.shape


def held_out_windows(data: str, bands: int) -> tuple[dict[str, list], list[str]]:
  """``({group: [(target, guide, y, x, target_img, guide_img)]}, skipped notes)``."""
  groups, skipped, cache = {}, [], {}

  def scene(p):
    if p not in cache:
      cache[p] = read_scene(p, bands)
    return cache[p]

  for group, tp, gp in date_pairs(data):
    t, g = scene(tp), scene(gp)
    if t.shape != g.shape or not _same_grid(tp, gp):
      g = aligned_guide(tp, gp, bands)
      if g is None:
        skipped.append(f"{os.path.basename(tp)} / {os.path.basename(gp)}: grids differ and are not georeferenced")
        continue
    origins = crop_origins(t.valid & g.valid, SIZE, "val", stride=SIZE // 2)
    if not len(origins):
      skipped.append(f"{os.path.relpath(tp, data)}: its held-out strip ({t.shape[1]}×{t.shape[0]} scene) "
                     f"holds no {SIZE}² window")
      continue
    for y, x in origins:
      groups.setdefault(group, []).append((os.path.relpath(tp, data), os.path.relpath(gp, data), int(y), int(x),
                                           t.image[y:y + SIZE, x:x + SIZE], g.image[y:y + SIZE, x:x + SIZE]))
  return groups, sorted(set(skipped))


def make_cases(data: str, bands: int, per_bucket: int, seed: int, guide_cloud_prob: float) -> tuple[list, list]:
  """Reproducible cases, ``per_bucket`` per bucket, windows round-robin over the groups."""
  rng = np.random.default_rng(seed)
  groups, skipped = held_out_windows(data, bands)
  names = sorted(groups)
  for n in names:
    rng.shuffle(groups[n])
  masks = MaskGenerator(cloud_mask_files(os.path.join(data, "cloud_masks"), "val"), weights={"clouds": 1.0})
  cases, k = [], 0
  for b in BUCKETS:
    for _ in range(per_bucket):
      g = names[k % len(names)]
      tp, gp, y, x, timg, gimg = groups[g][(k // len(names)) % len(groups[g])]
      k += 1
      m = masks.sample(rng, SIZE, SIZE, kind="clouds", coverage=float(rng.uniform(*b))) > 0.5
      gm = np.zeros_like(m)
      if rng.random() < guide_cloud_prob:
        gm = masks.sample(rng, SIZE, SIZE, kind="clouds", coverage=float(rng.uniform(0.05, 0.3))) > 0.5
      cases.append({
          "bucket": bucket_name(b),
          "group": g,
          "target": tp,
          "guide": gp,
          "y": y,
          "x": x,
          "coverage": float(m.mean()),
          "guide_coverage": float(gm.mean()),
          "image": timg,
          "guide_image": gimg,
          "mask": m,
          "guide_mask": gm
      })
  return cases, skipped


def _guided(c: dict):
  return regression.guided_fill(c["image"] * ~c["mask"][..., None], (~c["mask"]).astype(np.float32),
                                c["guide_image"] * ~c["guide_mask"][..., None], (~c["guide_mask"]).astype(np.float32))


def context_guided_fill(c: dict) -> np.ndarray:
  """cloudfill's classical guided context (local linear fit + residual)."""
  return _guided(c).fill


def gdal_unguided(c: dict) -> np.ndarray:
  return _finish(_gdal(c["image"], ~c["mask"]), c["mask"], c["image"], c["mask"])


class ModelFiller:
  """Calls a cloudfill SavedModel's ``restore`` signature on one case.

  Feeds ``image`` (holes zeroed) and ``mask`` (1 = missing); ``guide``
  (guide clouds zeroed) and ``guide_mask`` (1 = missing) when the signature
  takes them and ``use_guide``; ``context`` when it takes one: the pipeline's
  classical fill of the window (:func:`transforms.regression.guided_fill` with a
  guide, else :func:`transforms.context.push_pull`).
  """

  def __init__(self, path: str, use_guide: bool):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    self.tf = tf
    self.fn = tf.saved_model.load(path).signatures["restore"]
    self.inputs = set(self.fn.structured_input_signature[1])
    self.guided = use_guide and {"guide", "guide_mask"} <= self.inputs
    self.out_key = "restored" if "restored" in self.fn.structured_outputs else next(iter(self.fn.structured_outputs))

  def __call__(self, c: dict) -> np.ndarray:
    tf = self.tf
    m = c["mask"]
    img = np.where(m[..., None], 0, c["image"]).astype(np.float32)
    feed = {"image": img, "mask": m[..., None].astype(np.float32)}
    if self.guided:  # As the pipeline feeds it: the guide mapped onto the target's radiometry.
      g = _guided(c)
      feed["guide"] = g.mapped
      feed["guide_mask"] = c["guide_mask"][..., None].astype(np.float32)
      feed["context"] = g.fill
    else:
      feed["context"] = context.push_pull(img, (~m).astype(np.float32))
      feed["guide"] = np.zeros_like(img)
      feed["guide_mask"] = np.ones_like(feed["mask"])
    out = self.fn(**{k: tf.constant(v[None], tf.float32) for k, v in feed.items() if k in self.inputs})
    return _finish(out[self.out_key].numpy()[0], np.ones_like(m), c["image"], m)


def methods(args) -> tuple[dict[str, Callable[[dict], np.ndarray]], list[str]]:
  notes = []
  out = {
      "gdal_fillnodata": gdal_unguided,
      "guide_copy": guide_copy,
      "guide_linear": guide_linear,
      "guide_linear_residual": lambda c: guide_linear(c, residual=True)
  }
  if importlib.util.find_spec("transforms.context") is not None:
    out["context_guided_fill"] = context_guided_fill
  else:
    notes.append("transforms.context absent: context_guided_fill left out")
  if args.unguided_model:
    out["cloudfill_unguided"] = ModelFiller(args.unguided_model, use_guide=False)
  if args.model:
    f = ModelFiller(args.model, use_guide=True)
    if f.guided:
      out["cloudfill_guided"] = f
    else:
      notes.append(f"{args.model}: its restore signature takes no guide ({sorted(f.inputs)}): "
                   "cloudfill_guided left out")
  return out, notes


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
  p.add_argument("--model", default=None, help="a guided cloudfill SavedModel (restore takes guide, guide_mask)")
  p.add_argument("--unguided-model",
                 default=os.path.join(ROOT, "model_loader", "default_model"),
                 help="the unguided reference model ('' to leave out)")
  p.add_argument("--data", default=common.SHARED)
  p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "guided"))
  p.add_argument("--per-bucket", type=int, default=8)
  p.add_argument("--bands", type=int, default=3)
  p.add_argument("--guide-cloud-prob", type=float, default=0.25)
  p.add_argument("--seed", type=int, default=10)
  args = p.parse_args(argv)
  if not os.path.isdir(args.data):
    print(f"data folder {args.data} is absent", file=sys.stderr)
    return 2
  env = common.machine()
  cases, skipped = make_cases(args.data, args.bands, args.per_bucket, args.seed, args.guide_cloud_prob)
  fns, notes = methods(args)
  seconds = {n: 0.0 for n in fns}
  for i, c in enumerate(cases):
    c["metrics"] = {}
    for name, fn in fns.items():
      t = time.perf_counter()
      c["metrics"][name] = tile_metrics(c["image"], fn(c), c["mask"])
      seconds[name] += time.perf_counter() - t
    print(f"\r{i + 1}/{len(cases)}", end="", file=sys.stderr, flush=True)
  print(file=sys.stderr)
  names = [bucket_name(b) for b in BUCKETS] + ["all"]
  summary = {
      m: {
          n: {
              k: float(np.mean([c["metrics"][m][k] for c in cases if n in ("all", c["bucket"])])) for k in METRICS
          } for n in names
      } for m in fns
  }
  groups = sorted({c["group"] for c in cases})
  per_group = {
      m: {
          g: float(np.mean([c["metrics"][m]["hole_psnr"] for c in cases if c["group"] == g])) for g in groups
      } for m in fns
  }
  classical = [m for m in fns if m.startswith(("guide_", "context_"))]
  lines = [
      f"Two-date held-out set: {len(cases)} windows {SIZE}² ({args.per_bucket} per bucket) from the held-out "
      f"strip of {len(groups)} place groups ({', '.join(groups)}), held-out real cloud masks; guide clouds "
      f"on {sum(c['guide_coverage'] > 0 for c in cases)} windows; 0…1 scale, seed {args.seed}. Machine: "
      f"{env['cpu_model']}, {env['cpus_usable']} cores, load {env['loadavg_start']}.", ""
  ]
  lines += [f"Skipped: {s}." for s in skipped] + [f"Note: {n}." for n in notes] + [""]
  lines += [
      "**hole PSNR (dB)**", "", "| bucket | " + " | ".join(fns) + " | best classical guided |",
      "|---|" + "---|" * (len(fns) + 1)
  ]
  for n in names:
    best = max(classical, key=lambda m: summary[m][n]["hole_psnr"]) if classical else None
    lines.append(f"| {n} | " + " | ".join(f"{summary[m][n]['hole_psnr']:.2f}" for m in fns) + f" | {best or '–'} |")
  lines += ["", "**SSIM**", "", "| bucket | " + " | ".join(fns) + " |", "|---|" + "---|" * len(fns)]
  for n in names:
    lines.append(f"| {n} | " + " | ".join(f"{summary[m][n]['ssim']:.4f}" for m in fns) + " |")
  lines += [
      "", "**hole PSNR (dB) by place group**", "", "| group | " + " | ".join(fns) + " |", "|---|" + "---|" * len(fns)
  ]
  for g in groups:
    lines.append(f"| {g} | " + " | ".join(f"{per_group[m][g]:.2f}" for m in fns) + " |")
  lines += ["", "Seconds per window: " + ", ".join(f"{m} {seconds[m] / len(cases):.3f}" for m in fns), ""]
  text = "\n".join(lines)
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "guided.md"), "w", encoding="utf-8") as f:
    f.write(text)
  common.write_json(
      os.path.join(args.out, "guided.json"), {
          "seed":
              args.seed,
          "per_bucket":
              args.per_bucket,
          "guide_cloud_prob":
              args.guide_cloud_prob,
          "model":
              args.model,
          "unguided_model":
              args.unguided_model,
          "machine":
              env,
          "skipped":
              skipped,
          "notes":
              notes,
          "summary":
              summary,
          "per_group":
              per_group,
          "seconds_per_window": {
              m: seconds[m] / len(cases) for m in fns
          },
          "cases": [{
              k: v for k, v in c.items() if k not in ("image", "guide_image", "mask", "guide_mask")
          } for c in cases]
      })
  if "cloudfill_guided" in fns and "cloudfill_unguided" in fns:
    # A representative window, not the best one: the median guided gain of the 30-40 % bucket.
    c = median_gain_case(cases, bucket_name(BUCKETS[3]), "cloudfill_guided", "cloudfill_unguided")
    panel(os.path.join(args.out, "panel_guided.png"), c, {
        "cloudfill unguided": fns["cloudfill_unguided"](c),
        "cloudfill guided": fns["cloudfill_guided"](c)
    })
  print(text)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())

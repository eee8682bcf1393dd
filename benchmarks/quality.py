"""Restoration quality of the cloudfill model against classical fillers.

Validation windows come from the *held-out area* of every scene in the data
folder (the right-hand column strip, :mod:`training.scenes`), never trained
on. Holes are *real* cloud shapes from the held-out cloud-mask files
(``ukis_landsat7.png``, ``eolearn_clm/clm_50…67``), randomly cropped,
resized, rotated and flipped, grown or shrunk to a coverage drawn inside each
bucket (1–10 %, 10–20 %, …, 50–60 %).

Metrics per tile, averaged per bucket:

* hole PSNR (dB, peak 1, over hole pixels and bands),
* hole MAE,
* SSIM of the composited tile (known pixels kept, holes filled),
* spectral angle (degrees, mean over hole pixels) between restored and true
  band vectors.

Run (fixed seed, reproducible)::

  python -m benchmarks.quality --model model_loader/default_model \
      [--tflite-dir runs/default/tflite] [--out benchmarks/results/quality]

Prints Markdown tables; writes ``quality.json``, one PNG plot per metric and
``grid_{best,median,worst}.png`` crops into ``--out``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from benchmarks.fillers import FILLERS  # noqa: E402
from training.bundle import _keep  # noqa: E402  (the training data set's own exclusions)
from training.masks import MaskGenerator, cloud_mask_files  # noqa: E402
from training.scenes import crop_origins, list_rasters, read_scenes  # noqa
from transforms.context import push_pull  # noqa: E402

BUCKETS = [(0.01, 0.10), (0.10, 0.20), (0.20, 0.30), (0.30, 0.40), (0.40, 0.50), (0.50, 0.60)]
METRICS = ("hole_psnr", "hole_mae", "ssim", "spectral_angle")


def bucket_name(b):
  return f"{int(b[0] * 100)}-{int(b[1] * 100)}%"


def usable_rasters(data: str, bands: int) -> list[str]:
  """The data folder's rasters with at least ``bands`` bands (1-band pairs are left out)."""
  import rasterio
  out = []
  for path in list_rasters(data):
    with rasterio.open(path) as src:
      if src.count >= bands:
        out.append(path)
  return out


def validation_windows(data: str, bands: int, size: int):
  """All-valid ``size`` windows of the held-out strips, grouped by folder.

  Returns:
    ``{group: [(path, y, x, image)]}``.
  """
  scenes = read_scenes([f for f in usable_rasters(data, bands) if _keep(f)], bands)
  groups = {}
  for s in scenes:
    for y, x in crop_origins(s.valid, size, "val", stride=size // 2):
      g = os.path.basename(os.path.dirname(s.path))
      groups.setdefault(g, []).append((os.path.relpath(s.path, data), int(y), int(x), s.image[y:y + size, x:x + size]))
  return groups


def make_cases(data, bands, size, per_bucket, seed):
  """Reproducible (window, mask) cases: ``per_bucket`` per coverage bucket,
  windows taken round-robin over the scene folders."""
  rng = np.random.default_rng(seed)
  groups = validation_windows(data, bands, size)
  names = sorted(groups)
  for g in names:
    rng.shuffle(groups[g])
  masks = MaskGenerator(cloud_mask_files(os.path.join(data, "cloud_masks"), "val"), weights={"clouds": 1.0})
  cases, k = [], 0
  for b in BUCKETS:
    for _ in range(per_bucket):
      g = names[k % len(names)]
      path, y, x, img = groups[g][(k // len(names)) % len(groups[g])]
      k += 1
      cov = float(rng.uniform(*b))
      m = masks.sample(rng, size, size, kind="clouds", coverage=cov) > 0.5
      cases.append(dict(bucket=bucket_name(b), scene=path, y=y, x=x, coverage=float(m.mean()), image=img, mask=m))
  return cases


def tile_metrics(truth, filled, mask):
  """The four metrics for one tile (``filled`` composited)."""
  from skimage.metrics import structural_similarity
  d = (filled - truth)[mask]
  mse = float(np.mean(d**2))
  t, f = truth[mask], filled[mask]
  cos = (t * f).sum(-1) / np.maximum(np.linalg.norm(t, axis=-1) * np.linalg.norm(f, axis=-1), 1e-12)
  return dict(hole_psnr=float(-10 * np.log10(max(mse, 1e-10))),
              hole_mae=float(np.mean(np.abs(d))),
              ssim=float(structural_similarity(truth, filled, data_range=1.0, channel_axis=-1)),
              spectral_angle=float(np.degrees(np.arccos(np.clip(cos, -1, 1))).mean()))


def unguided_inputs(image: np.ndarray, mask: np.ndarray, names) -> dict:
  """A tile's model inputs as the pipeline makes them, without a guide:
  holes zeroed, the tile's push-pull context (for models that take one)."""
  img = image.astype(np.float32)
  m = mask[..., None].astype(np.float32)
  feed = {"image": img * (1 - m), "mask": m}
  if "context" in names:
    feed["context"] = push_pull(img, 1.0 - m[..., 0])
  if "guide" in names:
    feed["guide"] = np.zeros_like(img)
    feed["guide_mask"] = np.ones_like(m)
  return feed


class SavedModelFiller:
  """Calls a cloudfill SavedModel's ``restore`` signature (with the tile's
  push-pull context and no guide, for models that take them)."""

  def __init__(self, path):
    import tensorflow as tf
    self.tf = tf
    self.fn = tf.saved_model.load(path).signatures["restore"]
    self.inputs = set(self.fn.structured_input_signature[1])

  def __call__(self, image, mask):
    feed = unguided_inputs(image, mask, self.inputs)
    out = self.fn(**{k: self.tf.constant(v[None], self.tf.float32) for k, v in feed.items() if k in self.inputs})
    return out["restored"].numpy()[0]


class TFLiteFiller:
  """Runs a fixed-shape ``[1, W, W, C]`` TFLite model (its ``serving_default``
  signature: float in and out, whatever is quantised inside)."""

  def __init__(self, path):
    import tensorflow as tf
    self.it = tf.lite.Interpreter(model_path=path, num_threads=2)
    self.run = self.it.get_signature_runner("serving_default")
    self.inputs = set(self.it.get_signature_list()["serving_default"]["inputs"])

  def __call__(self, image, mask):
    feed = unguided_inputs(image, mask, self.inputs)
    out = self.run(**{k: v[None] for k, v in feed.items() if k in self.inputs})
    return out["restored"][0]


def _machine():
  try:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    cpu = next((l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name")),
               platform.processor())
  except OSError:
    cpu = platform.processor()
  return f"{cpu}, {os.cpu_count()} cores"


def _plots(summary, methods, out):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  names = [bucket_name(b) for b in BUCKETS]
  for metric in METRICS:
    fig, ax = plt.subplots(figsize=(7, 4))
    for meth in methods:
      ax.plot(names, [summary[meth][n][metric] for n in names], marker="o", label=meth)
    ax.set_xlabel("cloud cover of the tile")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, f"{metric}.png"), dpi=100)
    plt.close(fig)


def _grids(cases, outputs, model, best_filler, out):
  from PIL import Image
  order = np.argsort([c["metrics"][model]["hole_psnr"] for c in cases])
  picks = {"worst": order[0], "median": order[len(order) // 2], "best": order[-1]}
  for tag, i in picks.items():
    c = cases[i]
    img, m = c["image"][..., :3], c["mask"][..., None]
    holes = img * (1 - m) + m * np.array([1.0, 0.0, 1.0])
    row = [holes, outputs[model][i][..., :3], outputs[best_filler][i][..., :3], img]
    lo, hi = np.percentile(img, 1), np.percentile(img, 99)
    row = [np.clip((r - lo) / max(hi - lo, 1e-6), 0, 1) for r in row]
    sep = np.ones((img.shape[0], 4, 3))
    strip = np.concatenate(sum([[r, sep] for r in row], [])[:-1], 1)
    Image.fromarray((strip * 255).astype(np.uint8)).save(os.path.join(out, f"grid_{tag}.png"))


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--model", default=os.path.join(ROOT, "model_loader", "default_model"))
  p.add_argument("--also",
                 action="append",
                 default=[],
                 metavar="NAME=DIR",
                 help="another SavedModel to score beside --model (repeatable)")
  p.add_argument("--tflite-dir", default=None, help="folder with cloudfill_*.tflite to score too")
  p.add_argument("--data", default=os.path.join(os.path.dirname(ROOT), "shared", "data"))
  p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "quality"))
  p.add_argument("--per-bucket", type=int, default=8)
  p.add_argument("--size", type=int, default=256)
  p.add_argument("--bands", type=int, default=3)
  p.add_argument("--seed", type=int, default=2024)
  p.add_argument("--skip", nargs="*", default=[], help="filler names to leave out")
  args = p.parse_args(argv)
  if not os.path.isdir(args.data):
    print(f"data folder {args.data} is absent")
    return 2
  os.makedirs(args.out, exist_ok=True)
  cases = make_cases(args.data, args.bands, args.size, args.per_bucket, args.seed)
  methods = {}
  card = None
  if args.model and os.path.isdir(args.model):
    with open(os.path.join(args.model, "assets", "cloudfill.json")) as f:
      card = json.load(f)
    methods["cloudfill"] = SavedModelFiller(args.model)
  for spec in args.also:
    name, _, path = spec.partition("=")
    methods[name] = SavedModelFiller(path)
  if args.tflite_dir:
    for path in sorted(glob.glob(os.path.join(args.tflite_dir, "*.tflite"))):
      tag = os.path.basename(path).replace("cloudfill_", "").replace(".tflite", "")
      methods[f"cloudfill_tflite_{tag}"] = TFLiteFiller(path)
  methods.update({k: v for k, v in FILLERS.items() if k not in args.skip})
  outputs = {m: [] for m in methods}
  seconds = {m: 0.0 for m in methods}
  for i, c in enumerate(cases):
    c["metrics"] = {}
    for name, fn in methods.items():
      t = time.perf_counter()
      raw = np.asarray(fn(c["image"], c["mask"]), np.float32)
      seconds[name] += time.perf_counter() - t
      m3 = c["mask"][..., None]
      filled = c["image"] * (1 - m3) + raw * m3  # composite
      outputs[name].append(filled)
      c["metrics"][name] = tile_metrics(c["image"], filled, c["mask"])
    print(f"\r{i + 1}/{len(cases)} tiles", end="", file=sys.stderr, flush=True)
  print(file=sys.stderr)
  names = [bucket_name(b) for b in BUCKETS]
  summary = {
      m: {
          n: {
              k: float(np.mean([c["metrics"][m][k] for c in cases if c["bucket"] == n])) for k in METRICS
          } for n in names
      } for m in methods
  }
  for m in methods:
    summary[m]["all"] = {k: float(np.mean([c["metrics"][m][k] for c in cases])) for k in METRICS}
  classical = [m for m in methods if m in FILLERS]
  lines = [
      f"Tiles: {len(cases)} ({args.per_bucket} per bucket, "
      f"{args.size}x{args.size}, held-out area, held-out real cloud "
      f"masks), seed {args.seed}. Machine: {_machine()}.", ""
  ]
  for metric in METRICS:
    cols = ["bucket"] + list(methods)
    lines += [f"**{metric}**", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for n in names + ["all"]:
      lines.append(f"| {n} | " + " | ".join(
          f"{summary[m][n][metric]:.3f}" if metric != "hole_psnr" else f"{summary[m][n][metric]:.2f}"
          for m in methods) + " |")
    lines.append("")
  if "cloudfill" in methods and classical:
    lines += [
        "**cloudfill minus best classical filler** (hole PSNR dB; "
        "SSIM)", "", "| bucket | best classical | ΔPSNR | ΔSSIM |", "|---|---|---|---|"
    ]
    for n in names + ["all"]:
      best = max(classical, key=lambda m: summary[m][n]["hole_psnr"])
      best_ssim = max(summary[m][n]["ssim"] for m in classical)
      lines.append(f"| {n} | {best} | "
                   f"{summary['cloudfill'][n]['hole_psnr'] - summary[best][n]['hole_psnr']:+.2f} | "
                   f"{summary['cloudfill'][n]['ssim'] - best_ssim:+.4f} |")
    lines.append("")
  lines += ["Seconds per tile: " + ", ".join(f"{m} {seconds[m] / len(cases):.3f}" for m in methods), ""]
  text = "\n".join(lines)
  print(text)
  with open(os.path.join(args.out, "quality.md"), "w") as f:
    f.write(text)
  with open(os.path.join(args.out, "quality.json"), "w") as f:
    json.dump(
        {
            "card": card,
            "seed": args.seed,
            "size": args.size,
            "per_bucket": args.per_bucket,
            "machine": _machine(),
            "summary": summary,
            "seconds_per_tile": {
                m: seconds[m] / len(cases) for m in methods
            },
            "tiles": [{
                k: v for k, v in c.items() if k not in ("image", "mask")
            } for c in cases]
        },
        f,
        indent=1)
  _plots(summary, list(methods), args.out)
  if "cloudfill" in methods and classical:
    best_all = max(classical, key=lambda m: summary[m]["all"]["hole_psnr"])
    _grids(cases, outputs, "cloudfill", best_all, args.out)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())

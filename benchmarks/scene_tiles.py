"""256² tiles under real cloud masks, per coverage bucket: ``cloudfill run`` against GDAL FillNodata (issue 8).

The tiles are :mod:`benchmarks.quality`'s validation cases (held-out strip of
every scene, held-out cloud-mask files, grown or shrunk into each bucket
1–10 % … 50–60 %), on the same 0…1 scale (uint8 / 255, others stretched per
scene). Each is written as its own float32 GeoTIFF without georeferencing
(so no tile can borrow a neighbour's pixels), hole pixels set to 1.0 (a
saturated cloud), with its mask PNG; one ``cloudfill run`` restores them all.
GDAL FillNodata (:func:`benchmarks.fillers.gdal_fillnodata`) fills the same
holes. Scored with :func:`benchmarks.quality.tile_metrics` (hole PSNR, peak 1;
SSIM of the composited tile; MAE; spectral angle).

Run::

  python -m benchmarks.scene_tiles [--model DIR] [--per-bucket 8] \
      [--out benchmarks/results/scenes]

Writes ``tiles.json`` and ``tiles.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from benchmarks import common, runner  # noqa: E402
from benchmarks.fillers import gdal_fillnodata  # noqa: E402
from benchmarks.quality import BUCKETS, METRICS, bucket_name, make_cases, tile_metrics  # noqa: E402


def write_cases(cases: list[dict], folder: str) -> tuple[str, str]:
  """float32 GeoTIFFs (no georeferencing), holes at 1.0, and mask PNGs (255 = cloud)."""
  import rasterio  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  os.makedirs(os.path.join(folder, "images"), exist_ok=True)
  os.makedirs(os.path.join(folder, "masks"), exist_ok=True)
  for i, c in enumerate(cases):
    c["name"] = f"t{i:03d}"
    img = c["image"].astype(np.float32).copy()
    img[c["mask"]] = 1.0
    h, w, b = img.shape
    with rasterio.open(os.path.join(folder, "images", c["name"] + ".tif"),
                       "w",
                       driver="GTiff",
                       height=h,
                       width=w,
                       count=b,
                       dtype="float32") as dst:
      dst.write(np.moveaxis(img, -1, 0))
    Image.fromarray(c["mask"].astype(np.uint8) * 255).save(os.path.join(folder, "masks", c["name"] + ".png"))
  return os.path.join(folder, "images", "*.tif"), os.path.join(folder, "masks", "{stem}.png")


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
  p.add_argument("--model", default=None, help="SavedModel for cloudfill run (default: the packaged one)")
  p.add_argument("--data", default=common.SHARED)
  p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "scenes"))
  p.add_argument("--work", default=os.path.join(ROOT, "runs", "bench_tiles"))
  p.add_argument("--per-bucket", type=int, default=8)
  p.add_argument("--seed", type=int, default=2024)
  p.add_argument("--cloudfill-arg", action="append", default=[], help="extra argument for cloudfill run (repeat)")
  args = p.parse_args(argv)
  if not os.path.isdir(args.data):
    print(f"data folder {args.data} is absent", file=sys.stderr)
    return 2
  card = runner.model_card(args.model)
  env = common.machine()
  cases = make_cases(args.data, int(card["bands"]), 256, args.per_bucket, args.seed)
  images, masks = write_cases(cases, args.work)
  run = runner.run_cloudfill(images,
                             masks,
                             os.path.join(args.work, "out"),
                             args.model,
                             args.cloudfill_arg,
                             log_path=os.path.join(args.work, "cloudfill.log"))
  import rasterio  # pylint: disable=import-outside-toplevel
  gdal_seconds = 0.0
  for c in cases:
    m3 = c["mask"][..., None]
    t = time.perf_counter()
    gd = gdal_fillnodata(c["image"], c["mask"])
    gdal_seconds += time.perf_counter() - t
    c["metrics"] = {"gdal": tile_metrics(c["image"], c["image"] * (1 - m3) + gd * m3, c["mask"])}
    path = os.path.join(args.work, "out", "restored", c["name"] + ".tif")
    if os.path.exists(path):
      with rasterio.open(path) as src:
        out = np.moveaxis(src.read(), 0, -1)
      c["metrics"]["cloudfill"] = tile_metrics(c["image"], out, c["mask"])
      given = c["image"].copy()
      c["known_identical"] = bool(np.array_equal(out[~c["mask"]], given[~c["mask"]]))
  done = [c for c in cases if "cloudfill" in c["metrics"]]
  names = [bucket_name(b) for b in BUCKETS]
  summary = {}
  for meth in ("cloudfill", "gdal"):
    summary[meth] = {}
    for n in names + ["all"]:
      sel = [c for c in done if n in ("all", c["bucket"])]
      summary[meth][n] = {k: float(np.mean([c["metrics"][meth][k] for c in sel])) if sel else None for k in METRICS}
      summary[meth][n]["tiles"] = len(sel)
  lines = [
      f"256² tiles: {len(cases)} ({args.per_bucket} per bucket; {len(done)} restored by cloudfill), "
      f"held-out strip of each scene, held-out real cloud masks, 0…1 scale, seed {args.seed}; model "
      f"{card.get('name')} {card.get('version')}; `{' '.join(run['argv'])}` took {run['seconds']:.0f} s, "
      f"GDAL {gdal_seconds:.0f} s. Machine: {env['cpu_model']}, {env['cpus_usable']} cores, load "
      f"{env['loadavg_start']}. Known pixels bit-identical in every cloudfill output: "
      f"{all(c.get('known_identical') for c in done)}.", "",
      "| bucket | tiles | cloudfill hole PSNR dB | GDAL hole PSNR dB | Δ dB | cloudfill SSIM | GDAL SSIM |",
      "|---|---|---|---|---|---|---|"
  ]
  for n in names + ["all"]:
    a, g = summary["cloudfill"][n], summary["gdal"][n]
    if a["hole_psnr"] is None:
      lines.append(f"| {n} | 0 | – | – | – | – | – |")
      continue
    lines.append(f"| {n} | {a['tiles']} | {a['hole_psnr']:.2f} | {g['hole_psnr']:.2f} "
                 f"| {a['hole_psnr'] - g['hole_psnr']:+.2f} | {a['ssim']:.4f} | {g['ssim']:.4f} |")
  text = "\n".join(lines) + "\n"
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "tiles.md"), "w", encoding="utf-8") as f:
    f.write(text)
  common.write_json(
      os.path.join(args.out, "tiles.json"), {
          "card": card,
          "seed": args.seed,
          "per_bucket": args.per_bucket,
          "machine": env,
          "cloudfill_command": " ".join(run["argv"]),
          "cloudfill_seconds": run["seconds"],
          "gdal_seconds": gdal_seconds,
          "summary": summary,
          "tiles": [{
              k: v for k, v in c.items() if k not in ("image", "mask")
          } for c in cases]
      })
  print(text)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())

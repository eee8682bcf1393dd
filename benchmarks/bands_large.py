"""The large-scene mode of :mod:`benchmarks.bands` (``--large SIDE``): time and peak RSS
of a streamed SIDE² × 4 uint16 scene through ``cloudfill run``, per ``--extra-bands`` method."""

from __future__ import annotations

import os
import shutil
import sys
from typing import Optional

import numpy as np

from benchmarks import common

ROOT = common.ROOT
DATA = common.SHARED


def make_large(size: int, folder: str) -> tuple[str, float]:
  """A ``size``² × 4 uint16 GeoTIFF mirrored up from the real Landsat 8 scene (B2, B3, B4 and, as a
  fourth band, its B4 mirrored the other way: a real band that is not a copy), and a real cloud
  mask tiled over it (1024² blocks of the UKIS masks). Returns (image path, cloud cover)."""
  import rasterio  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  os.makedirs(folder, exist_ok=True)
  path = os.path.join(folder, f"large_{size}.tif")
  with rasterio.open(common.SCENE) as src:
    base = np.moveaxis(src.read(), 0, -1)[common.SCENE_CLEAN_ROW:]
    crs, transform = src.crs, src.transform
  img = common.mirrored(base, size)
  fourth = img[::-1, ::-1, 2]
  masks = [
      np.asarray(Image.open(os.path.join(DATA, "cloud_masks", "ukis", n)).convert("L")) > 127
      for n in ("ukis_sentinel2.png", "ukis_landsat7.png", "ukis_landsat5.png")
  ]
  mask = common.tiled_mask(masks, size, 1024, np.random.default_rng(0))
  with rasterio.open(path,
                     "w",
                     height=size,
                     width=size,
                     count=4,
                     crs=crs,
                     transform=transform,
                     **common.LARGE_SCENE_PROFILE) as dst:
    for b in range(3):
      dst.write(img[:, :, b], b + 1)
    dst.write(fourth, 4)
  Image.fromarray((mask * 255).astype(np.uint8)).save(os.path.join(folder, f"large_{size}_mask.png"))
  return path, float(mask.mean())


def bench_large(size: int, work: str, model: Optional[str], methods: list[str]) -> dict:
  """Wall time and peak RSS (GNU time) of ``cloudfill run`` on a streamed 4-band scene."""
  folder = os.path.join(work, "large")
  path, cover = make_large(size, folder)
  rows = []
  for method in methods:
    out = os.path.join(folder, f"out_{method}")
    shutil.rmtree(out, ignore_errors=True)
    rss = os.path.join(folder, f"maxrss_{method}.txt")
    argv = [
        sys.executable, "-m", "pipeline.cli", "run", "--images", path, "--masks", "{dir}/{stem}_mask.png", "--output",
        out, "--value-range", "0,65535", "--no-report", "--overwrite", "-q", "--extra-bands", method
    ] + (["--model", model] if model else [])
    run = common.run_measured(argv, rss, capture_output=True, text=True, cwd=ROOT)
    proc, wall, peak = run["proc"], run["wall_seconds"], run["peak_rss_mib"]
    row = {
        "size": size,
        "bands": 4,
        "method": method,
        "cloud_cover": round(cover, 3),
        "exit": proc.returncode,
        "wall_seconds": round(wall, 1),
        "peak_rss_mib": round(peak),
        "loadavg_after": common.loadavg()
    }
    if proc.returncode == 0:
      import rasterio  # pylint: disable=import-outside-toplevel
      with rasterio.open(os.path.join(out, "restored", os.path.basename(path))) as dst:
        row["output_bands"] = dst.count
    else:
      row["stderr"] = proc.stderr[-800:]
    common.log(f"large {size}² × 4, --extra-bands {method}: exit {proc.returncode}, {wall:.0f} s, "
               f"peak {peak:.0f} MiB")
    rows.append(row)
  return {"large": rows}

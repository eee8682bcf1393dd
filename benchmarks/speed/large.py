"""``--large``: ``cloudfill run`` on large scenes in a subprocess, wall seconds and peak RSS."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any, Optional, Sequence

import numpy as np

from benchmarks import common
from benchmarks.speed import base, runs
from pipeline import options as cli_options


def make_scene(size: int, folder: str, seed: int = 0) -> tuple[str, str, dict[str, Any]]:
  """A ``size`` x ``size`` x 3 uint16 GeoTIFF mirrored up from the real scene, and a
  cloud mask tiled from real masks (2x upscaled, flipped/rotated). Cached in ``folder``."""
  import rasterio  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  name = f"scene_{size}"
  img_path = os.path.join(folder, "images", name + ".tif")
  mask_path = os.path.join(folder, "masks", name + ".png")
  meta_path = os.path.join(folder, name + ".json")
  if os.path.exists(img_path) and os.path.exists(mask_path) and os.path.exists(meta_path):
    with open(meta_path, encoding="utf-8") as f:
      return img_path, mask_path, json.load(f)
  os.makedirs(os.path.dirname(img_path), exist_ok=True)
  os.makedirs(os.path.dirname(mask_path), exist_ok=True)
  if os.path.exists(common.SCENE):
    with rasterio.open(common.SCENE) as src:
      base = np.moveaxis(src.read(), 0, -1)[common.SCENE_CLEAN_ROW:]
      crs, transform, desc = src.crs, src.transform, src.descriptions
    source = f"{os.path.basename(common.SCENE)} rows {common.SCENE_CLEAN_ROW}: mirrored"
  else:
    with rasterio.open(sorted(__import__("glob").glob(os.path.join(common.SAMPLE, "images", "*.tif")))[0]) as src:
      base = np.moveaxis(src.read(), 0, -1)
      crs, transform, desc = src.crs, src.transform, src.descriptions
    source = "sample tile mirrored"
  image = common.mirrored(base, size)
  rng = np.random.default_rng(seed)
  masks = common.real_masks()
  big = [m for m in masks if min(m.shape) >= 256] or masks
  mask = common.tiled_mask(big, size, 1024, rng)
  with rasterio.open(img_path,
                     "w",
                     height=size,
                     width=size,
                     count=3,
                     crs=crs,
                     transform=transform,
                     **common.LARGE_SCENE_PROFILE) as dst:
    dst.write(np.moveaxis(image, -1, 0))
    for i, d in enumerate(desc or [], start=1):
      if d:
        dst.set_band_description(i, d)
  Image.fromarray((mask * 255).astype(np.uint8)).save(mask_path)
  meta = {"size": size, "coverage": float(mask.mean()), "source": source, "bytes_on_disk": os.path.getsize(img_path)}
  with open(meta_path, "w", encoding="utf-8") as f:
    json.dump(meta, f)
  return img_path, mask_path, meta


def make_guide(img_path: str, folder: str) -> str:
  """Another "date" of a :func:`make_scene` scene on its grid: its pixels × 0.9 + 400
  (a radiometric change the guided fill must map), written block by block,
  so an 8000² guide costs no more memory than a block. Cached in ``folder``."""
  import rasterio  # pylint: disable=import-outside-toplevel
  out = os.path.join(folder, os.path.basename(img_path))
  if os.path.exists(out):
    return out
  os.makedirs(folder, exist_ok=True)
  with rasterio.open(img_path) as src, rasterio.open(out + ".part", "w", **src.profile) as dst:
    for _, win in src.block_windows(1):
      a = src.read(window=win).astype(np.float32)
      dst.write(np.clip(a * 0.9 + 400, 0, 65535).astype(np.uint16), window=win)
  os.replace(out + ".part", out)
  return out


def bench_large(sizes: Sequence[int],
                work: str,
                batch_size: int,
                timeout: float,
                backend: str = "native",
                scene_pixels: Optional[int] = None,
                guided: bool = False) -> dict[str, Any]:
  """Wall seconds and peak RSS of ``cloudfill run`` on one large scene per size
  (with ``guided``, each scene also with ``--guide``: :func:`make_guide`)."""
  threshold = scene_pixels or cli_options.DEFAULTS.get("scene_pixels")
  scenes = os.path.join(work, "scenes")
  rows = []
  for size, with_guide in [(s, g) for s in sizes for g in ((False, True) if guided else (False,))]:
    extra = ["--scene-pixels", str(scene_pixels)] if scene_pixels else []
    t0 = time.perf_counter()
    img, _, meta = make_scene(size, scenes)
    if with_guide:
      extra += ["--guide", os.path.join(os.path.dirname(make_guide(img, os.path.join(work, "guides"))), "{stem}.tif")]
    made = time.perf_counter() - t0
    run_name = f"{size}{'_guided' if with_guide else ''}"
    output = os.path.join(work, f"out_large_{run_name}")
    shutil.rmtree(output, ignore_errors=True)
    stem = os.path.splitext(os.path.basename(img))[0]
    images = os.path.join(os.path.dirname(img), stem + ".tif")
    masks = os.path.join(scenes, "masks", "{stem}.png")
    cmd = [
        sys.executable, "-m", "pipeline.cli", "run",
        *runs.pipeline_argv(images, masks, output, backend, "in_memory", batch_size, 1, extra)
    ]
    common.log(f"  large {size}x{size}: scene ready ({made:.0f} s, coverage {meta['coverage']:.1%}); "
               "cloudfill run ...")
    rss_file = os.path.join(work, f"maxrss_{run_name}.txt")
    with open(os.path.join(work, f"log_large_{run_name}.txt"), "w", encoding="utf-8") as log:
      run = common.run_measured(cmd,
                                rss_file,
                                cwd=base.ROOT,
                                stdout=log,
                                stderr=subprocess.STDOUT,
                                timeout=timeout,
                                env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    proc = run["proc"]
    row: dict[str, Any] = {
        "size": size,
        "guided": with_guide,
        "pixels": size * size,
        "coverage": meta["coverage"],
        "exit": proc.returncode,
        "process_wall_seconds": run["wall_seconds"],
        "cpu_seconds": run["cpu_seconds"],
        "peak_rss_mib": run["peak_rss_mib"],
        "peak_rss_source": run["peak_rss_source"],
        "input_mib": size * size * 3 * 2 / 2**20,
        "loadavg_after": common.loadavg(),
        # GeoTIFFs above --scene-pixels are streamed by rows (transforms/scenes.py).
        "path": ("scene (streamed by rows)" if threshold and size * size > threshold else "tile (decoded whole)")
    }
    summary_path = os.path.join(output, "summary.json")
    if os.path.exists(summary_path):
      with open(summary_path, encoding="utf-8") as f:
        s = json.load(f)
      row["pipeline_wall_seconds"] = s.get("wall_seconds")
      row["counts"] = s.get("counts")
      row["seconds_per_tile"] = {k: v["mean"] for k, v in (s.get("seconds_per_tile") or {}).items() if v}
      with open(os.path.join(output, "metrics", os.listdir(os.path.join(output, "metrics"))[0]), encoding="utf-8") as f:
        m = json.loads(f.readline())["metrics"] if os.path.getsize(f.name) else {}
      row["windows"] = m.get("windows")
      if row.get("pipeline_wall_seconds") and row["windows"]:
        row["windows_per_s"] = row["windows"] / row["pipeline_wall_seconds"]
    rows.append(row)
    common.log(
        f"  large {size}x{size}{' guided' if with_guide else ''} [{row['path']}]: exit {proc.returncode}, {run['wall_seconds']:.1f} s process "
        f"({row.get('pipeline_wall_seconds')} s pipeline), peak RSS {row['peak_rss_mib']:.0f} MiB "
        f"(input {row['input_mib']:.0f} MiB), {row.get('windows')} windows, "
        f"stages {row.get('seconds_per_tile')}")
  if not guided and len(rows) >= 2 and all(r.get("pipeline_wall_seconds") for r in rows):
    px = np.log([r["pixels"] for r in rows])
    return {
        "runs": rows,
        "scene_pixels_threshold": threshold,
        "time_exponent": float(np.polyfit(px, np.log([r["pipeline_wall_seconds"] for r in rows]), 1)[0]),
        "rss_exponent": float(np.polyfit(px, np.log([r["peak_rss_mib"] for r in rows]), 1)[0])
    }
  return {"runs": rows, "scene_pixels_threshold": threshold}

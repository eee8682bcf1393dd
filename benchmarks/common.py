"""Shared pieces of the benchmarks: real tiles and masks, and the machine.

Tiles are crops of the real Landsat 8 scene in ``../shared/data`` (bands B2,
B3, B4, uint16 DN) with real cloud-mask shapes (eo-learn s2cloudless masks and
the UKIS reference masks, resized, flipped and rotated); without that folder
they fall back to the repository's ``sample/landsat8`` tiles and masks.
"""

from __future__ import annotations

import glob
import json
import os
import platform
import resource
import subprocess
import sys
import time
from typing import Any, Optional

import numpy as np

from training.defaults import default_data_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = default_data_dir()  # $CLOUDFILL_SHARED_DATA or ../shared/data
SCENE = os.path.join(SHARED, "landsat8", "LC08_L1TP_224078_20200518_B2B3B4.tif")
MASK_DIRS = (os.path.join(SHARED, "cloud_masks", "ukis"), os.path.join(SHARED, "cloud_masks", "eolearn_clm"))
SAMPLE = os.path.join(ROOT, "sample", "landsat8")
# Rows of the scene above this hold its no-data corner (0); below, every pixel is valid.
SCENE_CLEAN_ROW = 560


def _read_tif(path: str) -> tuple[np.ndarray, dict[str, Any]]:
  import rasterio  # pylint: disable=import-outside-toplevel
  with rasterio.open(path) as src:
    return np.moveaxis(src.read(), 0, -1), {
        "crs": src.crs,
        "transform": src.transform,
        "nodata": src.nodata,
        "descriptions": src.descriptions
    }


def real_masks() -> list[np.ndarray]:
  """Real binary cloud masks (True = cloud) with 1–95 % cover."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  out = []
  for d in MASK_DIRS:
    for path in sorted(glob.glob(os.path.join(d, "*.png"))):
      m = np.asarray(Image.open(path)) > 0
      if m.ndim == 3:
        m = m.any(axis=2)
      if 0.01 <= m.mean() <= 0.95:
        out.append(m)
  return out


# The GeoTIFF profile of the large scenes the benchmarks build (uint16, no-data 0, tiled and
# deflated as an archive scene is, BigTIFF when needed); add height, width, count, crs, transform.
LARGE_SCENE_PROFILE = dict(driver="GTiff",
                           dtype="uint16",
                           nodata=0,
                           compress="deflate",
                           tiled=True,
                           blockxsize=256,
                           blockysize=256,
                           BIGTIFF="IF_SAFER")


def mirrored(base: np.ndarray, size: int) -> np.ndarray:
  """``base [H, W, C]`` mirrored (symmetric padding) up to ``size`` x ``size`` and cropped to it."""
  return np.pad(base, ((0, max(0, size - base.shape[0])), (0, max(0, size - base.shape[1])), (0, 0)),
                mode="symmetric")[:size, :size]


def tiled_mask(masks: list[np.ndarray], size: int, block: int, rng: np.random.Generator) -> np.ndarray:
  """A ``size``² cloud mask (True = cloud) tiled from ``block``² blocks: each block one of
  ``masks`` drawn by ``rng``, resized (nearest) and rotated by a random multiple of 90°."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  mask = np.zeros((size, size), bool)
  for y in range(0, size, block):
    for x in range(0, size, block):
      m = masks[int(rng.integers(0, len(masks)))]
      m = np.asarray(Image.fromarray((m * 255).astype(np.uint8)).resize((block, block), Image.NEAREST)) > 127
      m = np.rot90(m, int(rng.integers(0, 4)))
      mask[y:y + block, x:x + block] = m[:min(block, size - y), :min(block, size - x)]
  return mask


def _resize_mask(m: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
  """A random square crop of ``m`` resized (nearest) to ``size``, flipped/rotated."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  side = min(m.shape)
  crop = int(rng.integers(max(16, side // 2), side + 1))
  y = int(rng.integers(0, m.shape[0] - crop + 1))
  x = int(rng.integers(0, m.shape[1] - crop + 1))
  im = Image.fromarray((m[y:y + crop, x:x + crop] * 255).astype(np.uint8))
  out = np.asarray(im.resize((size, size), Image.NEAREST)) > 127
  out = np.rot90(out, int(rng.integers(0, 4)))
  return np.ascontiguousarray(out[:, ::-1] if rng.integers(0, 2) else out)


def make_tiles(n: int,
               size: int = 256,
               seed: int = 0,
               coverage: tuple[float, float] = (0.05, 0.6)) -> tuple[list[dict[str, Any]], str]:
  """``n`` tiles ``{"name", "image" [size, size, 3] uint16, "mask" bool, "geo"}``.

  Returns:
    (tiles, a sentence saying where they came from).
  """
  rng = np.random.default_rng(seed)
  if os.path.exists(SCENE):
    scene, geo = _read_tif(SCENE)
    masks = real_masks()
    tiles = []
    while len(tiles) < n:
      y = int(rng.integers(SCENE_CLEAN_ROW, scene.shape[0] - size + 1))
      x = int(rng.integers(0, scene.shape[1] - size + 1))
      img = np.ascontiguousarray(scene[y:y + size, x:x + size])
      if (img == 0).any():
        continue
      for _ in range(20):
        m = _resize_mask(masks[int(rng.integers(0, len(masks)))], size, rng)
        if coverage[0] <= m.mean() <= coverage[1]:
          break
      else:
        continue
      t = geo["transform"]
      tiles.append({
          "name": f"tile{len(tiles):04d}_r{y}_c{x}",
          "image": img,
          "mask": m,
          "geo": dict(geo, transform=t * t.translation(x, y))
      })
    return tiles, (f"{n} crops {size}x{size} of {os.path.relpath(SCENE, ROOT)} (uint16 B2,B3,B4) with "
                   f"{len(masks)} real cloud-mask shapes (ukis, eo-learn) resized/flipped/rotated, "
                   f"coverage {coverage[0]:.0%}-{coverage[1]:.0%}, seed {seed}")
  from PIL import Image  # pylint: disable=import-outside-toplevel
  paths = sorted(glob.glob(os.path.join(SAMPLE, "images", "*.tif")))
  tiles = []
  for i in range(n):
    p = paths[i % len(paths)]
    img, geo = _read_tif(p)
    stem = os.path.splitext(os.path.basename(p))[0]
    m = np.asarray(Image.open(os.path.join(SAMPLE, "masks", stem + ".png"))) > 0
    y = int(rng.integers(0, img.shape[0] - size + 1))
    x = int(rng.integers(0, img.shape[1] - size + 1))
    tiles.append({
        "name": f"tile{i:04d}_{stem}",
        "image": np.ascontiguousarray(img[y:y + size, x:x + size]),
        "mask": np.ascontiguousarray(m[y:y + size, x:x + size]),
        "geo": geo
    })
  return tiles, f"{n} tiles cycled from sample/landsat8 (../shared/data absent), {size}x{size}"


def write_tiles(tiles: list[dict[str, Any]], folder: str) -> tuple[str, str]:
  """Writes tiles as GeoTIFF (deflate, like the pipeline's outputs) and masks as PNG (255 = cloud).

  Returns:
    (images glob, masks template) for ``cloudfill run``.
  """
  import rasterio  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  img_dir, mask_dir = os.path.join(folder, "images"), os.path.join(folder, "masks")
  os.makedirs(img_dir, exist_ok=True)
  os.makedirs(mask_dir, exist_ok=True)
  for t in tiles:
    h, w, c = t["image"].shape
    path = os.path.join(img_dir, t["name"] + ".tif")
    if not os.path.exists(path):
      with rasterio.open(path,
                         "w",
                         driver="GTiff",
                         height=h,
                         width=w,
                         count=c,
                         dtype="uint16",
                         crs=t["geo"]["crs"],
                         transform=t["geo"]["transform"],
                         nodata=0,
                         compress="deflate",
                         tiled=True,
                         blockxsize=256,
                         blockysize=256) as dst:
        dst.write(np.moveaxis(t["image"], -1, 0))
        for i, d in enumerate(t["geo"].get("descriptions") or [], start=1):
          if d:
            dst.set_band_description(i, d)
    mpath = os.path.join(mask_dir, t["name"] + ".png")
    if not os.path.exists(mpath):
      Image.fromarray((t["mask"] * 255).astype(np.uint8)).save(mpath)
  return os.path.join(img_dir, "*.tif"), os.path.join(mask_dir, "{stem}.png")


def _sh(cmd: list[str]) -> str:
  try:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False).stdout
  except (OSError, subprocess.SubprocessError):
    return ""


def loadavg() -> Optional[list[float]]:
  try:
    with open("/proc/loadavg", encoding="ascii") as f:
      return [float(x) for x in f.read().split()[:3]]
  except OSError:
    return None


def other_load() -> list[str]:
  """Command lines of other heavy processes (a training run) while we measure."""
  out = _sh(["pgrep", "-af", "training"])
  return [line[:160] for line in out.splitlines() if line and str(os.getpid()) not in line.split()[0]]


def machine() -> dict[str, Any]:
  """The machine and software the figures were taken on."""
  lscpu = _sh(["lscpu"])
  fields = {}
  for line in lscpu.splitlines():
    if ":" in line:
      k, v = line.split(":", 1)
      fields[k.strip()] = v.strip()
  mem_kb = None
  try:
    with open("/proc/meminfo", encoding="ascii") as f:
      mem_kb = int(f.readline().split()[1])
  except (OSError, ValueError, IndexError):
    pass
  versions = {"python": platform.python_version()}
  for mod in ("numpy", "apache_beam", "tensorflow", "rasterio"):
    try:
      versions[mod] = __import__(mod).__version__
    except Exception:  # pylint: disable=broad-except
      pass
  commit = (_sh(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).strip() or
            os.environ.get("CLOUDFILL_GIT_COMMIT", ""))
  return {
      "cpu_model": fields.get("Model name"),
      "cpus_online": os.cpu_count(),
      "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
      "threads_per_core": fields.get("Thread(s) per core"),
      "memory_gib": round(mem_kb / 2**20, 1) if mem_kb else None,
      "platform": platform.platform(),
      "versions": versions,
      "git_commit": commit or None,
      "loadavg_start": loadavg(),
      "other_heavy_processes": other_load(),
      "utc_start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
  }


def write_json(path: str, data: dict[str, Any]) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(data, f, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o))
  return path


def log(msg: str) -> None:
  print(msg, flush=True)
  sys.stdout.flush()


def run_measured(argv: list[str], rss_file: str, **kwargs) -> dict[str, Any]:
  """Runs ``argv`` (``subprocess.run`` with ``kwargs``) and measures its own peak memory.

  The peak is GNU time's ``%M`` of this run when ``/usr/bin/time`` exists
  (``getrusage(RUSAGE_CHILDREN)`` only gives the largest child so far, which
  may be an earlier run's), else that.

  Returns:
    ``{"proc", "wall_seconds", "cpu_seconds", "peak_rss_mib", "peak_rss_source"}``.
  """
  gnu_time = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
  cmd = [gnu_time, "-f", "%M", "-o", rss_file, *argv] if gnu_time else list(argv)
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  start = time.perf_counter()
  proc = subprocess.run(cmd, check=False, **kwargs)
  wall = time.perf_counter() - start
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  peak_kib, source = after.ru_maxrss, "getrusage(RUSAGE_CHILDREN): largest child so far"
  if gnu_time and os.path.exists(rss_file):
    with open(rss_file, encoding="utf-8") as f:
      digits = [line.strip() for line in f if line.strip().isdigit()]
    if digits:
      peak_kib, source = int(digits[-1]), "/usr/bin/time %M of this run"
  return {
      "proc": proc,
      "wall_seconds": wall,
      "cpu_seconds": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
      "peak_rss_mib": peak_kib / 1024,
      "peak_rss_source": source
  }

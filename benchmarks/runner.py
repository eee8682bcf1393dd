"""Running ``cloudfill run`` and GDAL FillNodata the way a user would, for the benchmarks.

``cloudfill run`` is called as a subprocess (the worktree's console script),
so a benchmark measures whatever the command does today, context, guides and
all, and can be re-run unchanged on a new engine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from typing import Optional, Sequence

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cloudfill_exe() -> list[str]:
  """The command that runs ``cloudfill``: the venv's console script beside this interpreter."""
  exe = os.path.join(os.path.dirname(sys.executable), "cloudfill")
  if os.path.exists(exe):
    return [exe]
  found = shutil.which("cloudfill")
  if found:
    return [found]
  return [sys.executable, "-m", "pipeline.cli"]


def model_card(model: Optional[str]) -> dict:
  """The model card (``assets/cloudfill.json``) of ``model`` or of the packaged default."""
  path = model or os.path.join(ROOT, "model_loader", "default_model")
  with open(os.path.join(path, "assets", "cloudfill.json"), encoding="utf-8") as f:
    return json.load(f)


def run_cloudfill(images: str,
                  masks: str,
                  output: str,
                  model: Optional[str] = None,
                  extra: Sequence[str] = (),
                  log_path: Optional[str] = None) -> dict:
  """Runs ``cloudfill run`` once; returns ``{"argv", "rc", "seconds", "summary"}``.

  Raises:
    RuntimeError: the command failed (its last lines of output in the message).
  """
  argv = cloudfill_exe() + [
      "run", "--images", images, "--masks", masks, "--output", output, "--overwrite", "--no-report"
  ]
  if model:
    argv += ["--model", model]
  argv += list(extra)
  start = time.perf_counter()
  proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT)
  seconds = time.perf_counter() - start
  if log_path:
    with open(log_path, "w", encoding="utf-8") as f:
      f.write(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
  if proc.returncode not in (0, 1):
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
    raise RuntimeError(f"cloudfill run exited {proc.returncode}: {tail}")
  summary = None
  spath = os.path.join(output, "summary.json")
  if os.path.exists(spath):
    with open(spath, encoding="utf-8") as f:
      summary = json.load(f)
  shown = [os.path.relpath(a, ROOT) if os.path.isabs(a) and a.startswith(ROOT) else a for a in argv]
  shown[0] = "cloudfill"
  return {"argv": shown, "rc": proc.returncode, "seconds": round(seconds, 2), "summary": summary}


def gdal_fill(image: np.ndarray, known: np.ndarray, max_search_distance: Optional[float] = None) -> np.ndarray:
  """GDAL FillNodata (``rasterio.fill.fillnodata``) of every band from the ``known`` pixels.

  Args:
    image: ``[H, W, C]`` any numeric dtype.
    known: ``[H, W]`` bool, True = a pixel GDAL may read.
    max_search_distance: Pixels; default: the image's diagonal (fills everything).

  Returns:
    float32 ``[H, W, C]``: every pixel outside ``known`` filled, ``known`` ones unchanged.
  """
  from rasterio.fill import fillnodata  # pylint: disable=import-outside-toplevel
  h, w = known.shape
  dist = float(max_search_distance or np.hypot(h, w) + 1)
  valid = known.astype(np.uint8)
  return np.stack([
      fillnodata(image[..., c].astype(np.float32), mask=valid.copy(), max_search_distance=dist, smoothing_iterations=0)
      for c in range(image.shape[-1])
  ], -1)


def to_dtype(values: np.ndarray, dtype) -> np.ndarray:
  """Float values rounded and clipped into an integer dtype (or cast to a float one)."""
  dt = np.dtype(dtype)
  if dt.kind in "iu":
    info = np.iinfo(dt)
    return np.clip(np.rint(values), info.min, info.max).astype(dt)
  return values.astype(dt)

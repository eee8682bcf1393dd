"""(c) The classical fillers (GDAL FillNodata, OpenCV, scikit-image) on the same tiles, one thread."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

from benchmarks import common
from benchmarks import fillers as classical
from benchmarks.speed import base
from transforms.scaling import to_unit


def _fillers() -> tuple[dict[str, Callable], str]:
  """The classical fillers of ``benchmarks/fillers.py``."""
  registry = getattr(classical, "FILLERS", None)
  if isinstance(registry, dict):
    return dict(registry), "benchmarks/fillers.py"
  found = {}
  for name in dir(classical):
    fn = getattr(classical, name)
    if callable(fn) and not name.startswith("_") and getattr(fn, "__module__", "") == classical.__name__ \
        and ("fill" in name.lower() or name.lower() in ("telea", "ns", "biharmonic", "mean")):
      found[name] = fn
  return found, "benchmarks/fillers.py"


def bench_fillers(tiles, slow_limit: int, budget_s: float) -> dict[str, Any]:
  """Tiles/s of each classical filler on one thread (float32 0…1 input, like the model's)."""
  try:
    import cv2  # pylint: disable=import-outside-toplevel
    cv2.setNumThreads(1)
  except ImportError:
    pass
  fns, source = _fillers()
  out: dict[str, Any] = {"source": source, "threads": 1, "by_filler": {}}
  data = [(to_unit(t["image"], *base.VALUE_RANGE), t["mask"]) for t in tiles]
  for name, fn in fns.items():
    times = []
    start = time.perf_counter()
    for i, (img, m) in enumerate(data):
      t0 = time.perf_counter()
      try:
        fn(img, m)
      except Exception as e:  # pylint: disable=broad-except
        out["by_filler"][name] = {"error": f"{type(e).__name__}: {e}"}
        break
      times.append(time.perf_counter() - t0)
      # Slow fillers (biharmonic: seconds per tile) are timed on fewer tiles.
      if time.perf_counter() - start > budget_s and i + 1 >= min(slow_limit, len(data)):
        break
    if times:
      out["by_filler"][name] = {
          "tiles": len(times),
          "seconds_per_tile_median": statistics.median(times),
          "tiles_per_s": len(times) / sum(times)
      }
      common.log(f"  filler {name:22s}: {len(times) / sum(times):8.2f} tiles/s ({len(times)} tiles)")
  gdal = [k for k in out["by_filler"] if "gdal" in k.lower() or "fillnodata" in k.lower()]
  out["gdal_key"] = gdal[0] if gdal else None
  return out

"""The report's histograms (matplotlib, imported when first drawn).

Coverage and holes, seconds per stage, and the quality figures of the
restored tiles, each as PNG bytes.
"""

from __future__ import annotations

import io
from typing import Any, Iterable, Sequence

import numpy as np

from transforms.records import RESTORED

QUALITY_KEYS = ("psnr", "ssim", "mae", "spectral_angle_deg")
STAGE_ORDER = ("decode", "window_infer", "composite", "write")


def _figure_png(fig) -> bytes:
  from matplotlib.ticker import MaxNLocator  # pylint: disable=import-outside-toplevel
  for ax in fig.axes:  # Tile counts are whole numbers.
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  plt.close(fig)
  return buf.getvalue()


def _finite(values: Iterable[Any]) -> np.ndarray:
  v = np.asarray([x for x in values if isinstance(x, (int, float)) and not isinstance(x, bool)], np.float64)
  return v[np.isfinite(v)]


def _stage_names(results: Sequence[dict[str, Any]]) -> list[str]:
  names = {k for r in results for k in (r.get("metrics", {}).get("seconds") or {})}
  return [s for s in STAGE_ORDER if s in names] + sorted(names - set(STAGE_ORDER))


def make_figures(results: Sequence[dict[str, Any]]) -> list[tuple[str, str, bytes]]:
  """Histograms of the restored tiles' figures.

  Returns:
    ``(file name, caption, PNG bytes)`` per figure; empty when nothing was
    restored.
  """
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg", force=False)
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  matplotlib.rcParams["axes.formatter.useoffset"] = False

  restored = [r for r in results if r.get("outcome") == RESTORED]
  if not restored:
    return []
  metrics = [r.get("metrics") or {} for r in restored]
  out = []

  fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
  cov = _finite(m.get("coverage") for m in metrics)
  axes[0].hist(cov * 100, bins=np.linspace(0, 100, 21), color="#4a78b5", edgecolor="white")
  axes[0].set_xlabel("mask coverage (% of the tile's pixels)")
  axes[0].set_ylabel("tiles")
  axes[0].set_title(f"coverage, {cov.size} tiles")
  holes = _finite(m.get("holes") for m in metrics)
  top = float(holes.max()) if holes.size else 1.0
  axes[1].hist(holes, bins=20, range=(0, max(top * 1.05, 1.0)), color="#4a78b5", edgecolor="white")
  axes[1].set_xlabel("holes per tile (4-connected)")
  axes[1].set_title("holes")
  out.append(("coverage.png", "Mask coverage and number of holes per restored tile.", _figure_png(fig)))

  stages = _stage_names(restored)
  if stages:
    fig, axes = plt.subplots(1, len(stages), figsize=(2.6 * len(stages) + 1, 3.0), squeeze=False)
    for ax, stage in zip(axes[0], stages):
      secs = _finite((m.get("seconds") or {}).get(stage) for m in metrics)
      if secs.size:
        ax.hist(secs * 1000,
                bins=20,
                range=(0, max(float(secs.max()) * 1050, 1e-3)),
                color="#d08a2c",
                edgecolor="white")
        ax.axvline(np.median(secs) * 1000, color="#333", lw=1, ls="--")
      ax.set_title(f"{stage}\nmedian {np.median(secs) * 1000:.1f} ms" if secs.size else stage, fontsize=9)
      ax.set_xlabel("ms per tile", fontsize=8)
      ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("tiles")
    out.append(("timings.png", "Seconds per tile spent in each stage (window_infer: the tile's "
                "windows' cutting plus their share of each inference batch).", _figure_png(fig)))

  qkeys = [k for k in QUALITY_KEYS + ("seam",) if _finite(m.get(k) for m in metrics).size]
  if qkeys:
    fig, axes = plt.subplots(1, len(qkeys), figsize=(2.6 * len(qkeys) + 1, 3.0), squeeze=False)
    for ax, key in zip(axes[0], qkeys):
      vals = _finite(m.get(key) for m in metrics)
      ax.hist(vals, bins=20, color="#3a9a6a", edgecolor="white")
      ax.set_title(f"{key}\nmedian {np.median(vals):.3g}", fontsize=9)
      ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("tiles")
    out.append(("quality.png", "Quality per tile over the missing pixels (PSNR dB, SSIM, MAE and "
                "spectral angle on the 0…1 scale, when evaluated) and the seam score "
                "(about 1: no visible seam).", _figure_png(fig)))
  return out

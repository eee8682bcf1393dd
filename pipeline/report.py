"""``cloudfill report RUN_DIR``: a one-page HTML report of a finished run.

The report is ``RUN_DIR/report.html`` plus PNG figures in ``RUN_DIR/report/``
(referenced by relative paths, so the folder can be copied or served as is).
It shows:

* the counts (matched, restored, skipped, failed) and the dead-letter
  reasons, from ``summary.json`` (or, when that is missing, from the metrics
  and dead letters themselves);
* histograms of mask coverage, of the seconds each stage took per tile, and
  of the quality figures when the run was evaluated;
* before/after thumbnails of the tiles with the largest holes: the input with
  the restored pixels overlaid, and the output, with one percentile stretch
  per tile shared by both.

Everything is read and written through Beam's ``FileSystems``
(:mod:`transforms.raster_io`), so ``RUN_DIR`` may be local, ``gs://`` or
``s3://``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import io
import json
import re
import string
import sys
from typing import Any, Iterable, Optional, Sequence

import numpy as np
from apache_beam.io.filesystems import FileSystems

from pipeline import report_layers as layers
from pipeline import summary as summary_lib
from transforms.raster_io import TIFF_EXTS, decode_raster, read_bytes, split_ext, write_bytes_atomic
from transforms.records import FAILED, OUTCOMES, RESTORED

REPORT_HTML = "report.html"
REPORT_DIR = "report"
METRICS_DIR = "metrics"
FAILED_DIR = "failed"
THUMB_SIDE = 320
MAX_DEAD_ROWS = 50
STRETCH_PERCENTILES = (2.0, 98.0)
OVERLAY_RGB = (255, 0, 200)
OVERLAY_ALPHA = 0.45
JPEG_TOLERANCE = 12  # DN of 8-bit JPEG outputs under which a pixel counts as unchanged.
QUALITY_KEYS = ("psnr", "ssim", "mae", "spectral_angle_deg")
STAGE_ORDER = ("decode", "window_infer", "composite", "write")

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>cloudfill report: $title</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto;
       max-width: 1100px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.meta { color: #666; font-size: 0.9em; }
.counts { display: flex; gap: 1em; flex-wrap: wrap; margin: 1em 0; }
.count { border: 1px solid #ddd; border-radius: 6px; padding: 0.5em 1.2em; min-width: 7em; }
.count .n { font-size: 1.8em; font-weight: 600; display: block; }
.count.failed .n { color: #b00020; }
.count.skipped .n { color: #8a6d00; }
.count.restored .n { color: #1b7f3b; }
table { border-collapse: collapse; width: 100%; font-size: 0.9em; }
th, td { text-align: left; padding: 0.25em 0.5em; border-bottom: 1px solid #eee; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.path { word-break: break-all; }
.figs img { max-width: 100%; height: auto; display: block; margin: 0.5em 0; }
.tile { display: flex; gap: 1em; align-items: flex-start; margin: 1em 0; flex-wrap: wrap; }
.tile figure { margin: 0; }
.tile figcaption { font-size: 0.8em; color: #555; }
.tile img { border: 1px solid #ccc; image-rendering: auto; }
.tile .info { font-size: 0.85em; flex: 1; min-width: 14em; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; margin: 0 0.2em 0 0.6em; vertical-align: middle; }
.note { background: #f6f6f6; border-left: 3px solid #bbb; padding: 0.4em 0.8em; font-size: 0.9em; }
.warn { border-left-color: #d08000; }
</style>
</head>
<body>
<h1>cloudfill run report</h1>
<div class="meta">Run folder <code>$run_dir</code> &middot; model $model &middot; finished $finished
&middot; report made $made</div>
$source_note
<h2>Counts</h2>
<div class="counts" id="counts">
$counts
</div>
$add_up_note
$timing_line
<h2>Dead letters</h2>
$reasons
$dead_table
<h2>Distributions</h2>
<div class="figs">
$figures
</div>
<h2>Largest holes: before and after</h2>
$thumb_note
$thumbs
</body>
</html>
"""


# --------------------------------------------------------------------------- reading


def _join(*parts: str) -> str:
  return FileSystems.join(*parts)


def _read_jsonl(folder: str) -> list[dict[str, Any]]:
  """Every JSON line of ``folder/*.jsonl`` (any filesystem), in file order."""
  rows: list[dict[str, Any]] = []
  try:
    found = FileSystems.match([_join(folder, "*.jsonl")])[0].metadata_list
  except Exception:  # pylint: disable=broad-except  (no such folder)
    return rows
  for meta in sorted(found, key=lambda m: m.path):
    text = read_bytes(meta.path).decode("utf-8")
    for line in text.splitlines():
      line = line.strip()
      if line:
        try:
          rows.append(json.loads(line))
        except json.JSONDecodeError:
          continue
  return rows


def _read_json(path: str) -> Optional[dict[str, Any]]:
  if not FileSystems.exists(path):
    return None
  return json.loads(read_bytes(path).decode("utf-8"))


def load_run(run_dir: str) -> dict[str, Any]:
  """Reads a run's records.

  Returns:
    A dict with ``summary`` (``summary.json``, or one rebuilt from the records
    when the file is missing, flagged by ``summary_rebuilt``), ``results``
    (``metrics/*.jsonl`` rows) and ``dead`` (``failed/*.jsonl`` rows).

  Raises:
    FileNotFoundError: the folder holds neither a summary nor any record.
  """
  results = _read_jsonl(_join(run_dir, METRICS_DIR))
  dead = _read_jsonl(_join(run_dir, FAILED_DIR))
  summary = _read_json(_join(run_dir, summary_lib.SUMMARY))
  rebuilt = False
  if summary is None:
    if not results and not dead:
      raise FileNotFoundError(f"{run_dir} holds no {summary_lib.SUMMARY}, metrics or dead letters: "
                              "is it a cloudfill run folder?")
    records = [{"path": r["path"], "outcome": r["outcome"], "output": r.get("output"),
                "metrics": r.get("metrics", {})} for r in results]
    records += [{"path": d["path"], "outcome": d.get("outcome", FAILED), "stage": d.get("stage"),
                 "reason": d.get("reason", "")} for d in dead]
    summary, _ = summary_lib.summarize(records, model={})
    rebuilt = True
  return {"summary": summary, "summary_rebuilt": rebuilt, "results": results, "dead": dead}


# --------------------------------------------------------------------------- figures


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
  v = np.asarray([x for x in values if isinstance(x, (int, float)) and not isinstance(x, bool)],
                 np.float64)
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
        ax.hist(secs * 1000, bins=20, range=(0, max(float(secs.max()) * 1050, 1e-3)),
                color="#d08a2c", edgecolor="white")
        ax.axvline(np.median(secs) * 1000, color="#333", lw=1, ls="--")
      ax.set_title(f"{stage}\nmedian {np.median(secs) * 1000:.1f} ms" if secs.size else stage,
                   fontsize=9)
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


# --------------------------------------------------------------------------- thumbnails


def _read_preview(path: str, max_side: int) -> tuple[np.ndarray, dict[str, Any]]:
  """A raster decimated (nearest) to at most ``max_side`` pixels a side.

  TIFFs are decimated while decoding (overviews when present), so big scenes
  do not have to fit in memory at full size; other formats are decoded in
  full by :func:`transforms.raster_io.decode_raster` and subsampled.

  Returns:
    ``([h, w, C] array, {"descriptions": [...], "nodata": ...})``.
  """
  data = read_bytes(path)
  ext = split_ext(path)[1].lower()
  if ext in TIFF_EXTS:
    from rasterio.enums import Resampling  # pylint: disable=import-outside-toplevel
    from rasterio.io import MemoryFile  # pylint: disable=import-outside-toplevel
    with MemoryFile(data) as mem, mem.open() as src:
      step = max(1, int(np.ceil(max(src.height, src.width) / max_side)))
      shape = (src.count, max(1, src.height // step), max(1, src.width // step))
      arr = src.read(out_shape=shape, resampling=Resampling.nearest)
      return np.moveaxis(arr, 0, -1), {"descriptions": list(src.descriptions), "nodata": src.nodata}
  arr, profile = decode_raster(data, ext)
  step = max(1, int(np.ceil(max(arr.shape[:2]) / max_side)))
  return arr[::step, ::step], {"descriptions": profile.get("descriptions") or [],
                               "nodata": profile.get("nodata")}


_COLOUR_WORDS = {"red": ("red", "b4", "b04"), "green": ("green", "b3", "b03"),
                 "blue": ("blue", "b2", "b02")}


def display_bands(descriptions: Sequence[Optional[str]], count: int,
                  model_bands: Optional[Sequence[int]] = None) -> tuple[list[int], str]:
  """Which bands to show as red, green, blue, and a note saying which.

  Bands whose descriptions name red, green and blue are shown in that order;
  otherwise the three bands the model restored (``model_bands``, 1-based, from
  the metrics line's ``bands``: ``--bands`` or the profile's, e.g. B04,B03,B02
  of a 13-band Sentinel-2 scene); otherwise the first three bands as RGB; one
  or two bands as grey (the first).

  Returns:
    (0-based band indices, note).
  """
  if count < 3:
    return [0, 0, 0], "single band shown in grey" if count == 1 else "band 1 of 2 shown in grey"
  found = {}
  for colour, words in _COLOUR_WORDS.items():
    for i, d in enumerate(descriptions or []):
      tokens = re.split(r"[^a-z0-9]+", (d or "").lower())
      if colour in tokens and i not in found.values():
        found[colour] = i
        break
  if len(found) == 3:
    idx = [found["red"], found["green"], found["blue"]]
    return idx, ("true colour: bands " + ",".join(str(i + 1) for i in idx)
                 + " (described as red, green, blue) shown as R,G,B")
  if model_bands and len(model_bands) == 3 and all(1 <= b <= count for b in model_bands):
    idx = [int(b) - 1 for b in model_bands]
    return idx, (f"the model's bands {','.join(str(b) for b in model_bands)} of {count} shown as R,G,B "
                 "(--bands or the profile's bands)")
  return [0, 1, 2], (f"bands 1,2,3 of {count} shown as R,G,B (no band descriptions name red, "
                     "green and blue: false colour possible)")


def stretch(image: np.ndarray, valid: np.ndarray,
            percentiles: tuple[float, float] = STRETCH_PERCENTILES) -> tuple[np.ndarray, np.ndarray]:
  """Per-band (lo, hi) of a percentile stretch over the ``valid`` pixels."""
  px = image[valid] if valid.any() else image.reshape(-1, image.shape[-1])
  px = px.astype(np.float64)
  px = px[np.isfinite(px).all(axis=1)] if px.size else px
  if px.size == 0:
    return np.zeros(image.shape[-1]), np.ones(image.shape[-1])
  lo = np.percentile(px, percentiles[0], axis=0)
  hi = np.percentile(px, percentiles[1], axis=0)
  hi = np.where(hi > lo, hi, lo + 1e-9)
  return lo, hi


def to_rgb8(image: np.ndarray, bands: Sequence[int], lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
  """``[h, w, C]`` -> ``[h, w, 3]`` uint8 with the given per-band stretch."""
  sel = image[:, :, list(bands)].astype(np.float64)
  lo_b, hi_b = np.asarray(lo)[list(bands)], np.asarray(hi)[list(bands)]
  unit = np.clip((sel - lo_b) / (hi_b - lo_b), 0.0, 1.0)
  return np.nan_to_num(unit * 255.0 + 0.5).astype(np.uint8)


def overlay(rgb: np.ndarray, mask: np.ndarray, colour=OVERLAY_RGB, alpha=OVERLAY_ALPHA) -> np.ndarray:
  out = rgb.astype(np.float32)
  out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(colour, np.float32)
  return out.astype(np.uint8)


def _png(rgb: np.ndarray) -> bytes:
  from PIL import Image  # pylint: disable=import-outside-toplevel
  buf = io.BytesIO()
  Image.fromarray(rgb).save(buf, format="PNG", optimize=False)
  return buf.getvalue()


def largest_holes(results: Sequence[dict[str, Any]], n: int) -> list[dict[str, Any]]:
  """The ``n`` restored tiles with the largest single hole (then most missing pixels)."""
  restored = [r for r in results if r.get("outcome") == RESTORED and r.get("output")]
  key = lambda r: (-(r.get("metrics", {}).get("largest_hole") or 0),  # noqa: E731
                   -(r.get("metrics", {}).get("missing_pixels") or 0), r.get("path", ""))
  return sorted(restored, key=key)[:n]


def make_thumbnails(row: dict[str, Any], max_side: int = THUMB_SIDE,
                    output_dir: Optional[str] = None) -> dict[str, Any]:
  """Before (input, restored pixels overlaid), after (output, restored area
  outlined) and provenance PNGs of one tile.

  The restored area is the provenance layer's generated pixels when the run
  wrote one, else the pixels the run changed (input != output in any band; a
  generated value equal to the input's by chance is then not marked). The
  stretch uses observed pixels only, never no-data. A large scene with an
  engine preview (``preview/{stem}.png``) shows that preview instead.

  Returns:
    ``{"before": bytes, "after": bytes, "provenance": bytes or None,
    "note": str, "changed": fraction, "shape": (h, w)}``.
  """
  if output_dir and (row.get("metrics") or {}).get("scene"):
    png = layers.preview_bytes(output_dir, row)
    if png is not None:
      from PIL import Image  # pylint: disable=import-outside-toplevel
      with Image.open(io.BytesIO(png)) as im:
        shape = (im.height, im.width)
      return {"before": None, "after": png, "provenance": None, "shape": shape, "changed": 0.0,
              "note": "large scene: the engine's preview"}
  before, info = _read_preview(row["path"], max_side)
  after, _ = _read_preview(row["output"], max_side)
  if before.shape != after.shape:
    raise ValueError(f"input {before.shape} and output {after.shape} previews differ in shape")
  lossy = split_ext(row["output"])[1].lower() in (".jpg", ".jpeg")
  if lossy:  # JPEG re-encoding moves every pixel a little: mark only clear changes.
    diff = np.abs(before.astype(np.float64) - after.astype(np.float64)).max(axis=2)
    changed = diff > JPEG_TOLERANCE  # JPEG outputs are 8-bit.
  else:
    changed = np.any(before != after, axis=2)
  if before.dtype.kind == "f":
    changed &= ~(np.isnan(before) & np.isnan(after)).all(axis=2)
  classes = layers.read_provenance(output_dir, row, before.shape[:2]) if output_dir else None
  if classes is not None:
    changed = np.isin(classes, (1, 2))
  layout = (row.get("metrics") or {}).get("bands") or {}
  bands, note = display_bands(info["descriptions"], before.shape[2], layout.get("model"))
  if layout.get("extra"):
    note += (f"; every band comes out: bands {','.join(map(str, layout['extra']))} filled "
             f"({layout.get('extra_method')})")
  valid = layers.stretch_pixels(before, changed, info.get("nodata"))
  if classes is not None:
    valid &= classes == 0
  lo, hi = stretch(before, valid)
  if lossy:
    note += f"; JPEG output: pixels changed by more than {JPEG_TOLERANCE} DN are marked"
  return {"before": _png(overlay(to_rgb8(before, bands, lo, hi), changed)),
          "after": _png(layers.draw_outline(to_rgb8(after, bands, lo, hi), changed)),
          "provenance": _png(layers.provenance_rgb(classes)) if classes is not None else None,
          "note": note, "changed": float(changed.mean()), "shape": before.shape[:2]}


# --------------------------------------------------------------------------- HTML


def _e(value: Any) -> str:
  return html.escape(str(value), quote=True)


def _fmt(value: Any, digits: int = 3) -> str:
  if value is None:
    return "–"
  if isinstance(value, float):
    if not np.isfinite(value):
      return str(value)
    return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
  if isinstance(value, int):
    return f"{value:,}"
  return str(value)


def _counts_html(summary: dict[str, Any]) -> str:
  counts = summary.get("counts", {})
  cells = [f'<div class="count matched"><span class="n" id="count-matched" data-count="'
           f'{int(summary.get("matched", 0))}">{int(summary.get("matched", 0))}</span>matched</div>']
  for k in OUTCOMES:
    n = int(counts.get(k, 0))
    cells.append(f'<div class="count {k}"><span class="n" id="count-{k}" data-count="{n}">{n}</span>'
                 f"{k}</div>")
  return "\n".join(cells)


def _reasons_html(summary: dict[str, Any]) -> str:
  reasons = summary.get("reasons") or {}
  if not reasons:
    return "<p>None: every matched input was restored.</p>"
  rows = "".join(f'<tr><td class="num">{n}</td><td>{_e(k)}</td></tr>'
                 for k, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
  return (f'<table id="reasons"><tr><th class="num">inputs</th><th>outcome: stage: reason</th></tr>'
          f"{rows}</table>")


def _dead_html(dead: Sequence[dict[str, Any]]) -> str:
  if not dead:
    return ""
  shown = sorted(dead, key=lambda d: (d.get("outcome", ""), d.get("path", "")))[:MAX_DEAD_ROWS]
  rows = "".join(f'<tr><td>{_e(d.get("outcome", FAILED))}</td><td>{_e(d.get("stage", ""))}</td>'
                 f'<td class="path">{_e(d.get("path", ""))}</td><td>{_e(d.get("reason", ""))}</td></tr>'
                 for d in shown)
  more = (f"<p>… and {len(dead) - len(shown)} more in <code>{FAILED_DIR}/*.jsonl</code>.</p>"
          if len(dead) > len(shown) else "")
  return (f"<p>Inputs in <code>{FAILED_DIR}/*.jsonl</code> (up-to-date skips are counted above "
          f"but not listed there):</p><table id=\"dead\"><tr><th>outcome</th><th>stage</th>"
          f"<th>input</th><th>reason</th></tr>{rows}</table>{more}")


def _timing_html(summary: dict[str, Any]) -> str:
  parts = []
  if summary.get("wall_seconds") is not None:
    parts.append(f"wall time {_fmt(float(summary['wall_seconds']))} s")
  if summary.get("restored_per_second") is not None:
    parts.append(f"{_fmt(float(summary['restored_per_second']))} restored tiles/s")
  spt = summary.get("seconds_per_tile") or {}
  for stage in [s for s in STAGE_ORDER if s in spt] + sorted(set(spt) - set(STAGE_ORDER)):
    if spt[stage]:
      parts.append(f"{_e(stage)} p50 {_fmt(spt[stage]['p50'] * 1000)} ms")
  return f'<p class="meta">{" &middot; ".join(parts)}</p>' if parts else ""


def _metric_lines(m: dict[str, Any]) -> str:
  keys = [("coverage", "coverage", lambda v: f"{v * 100:.1f} %"),
          ("holes", "holes", _fmt), ("largest_hole", "largest hole (px)", _fmt),
          ("windows", "windows", _fmt), ("seam", "seam", _fmt),
          ("psnr", "PSNR (dB)", _fmt), ("ssim", "SSIM", _fmt), ("mae", "MAE", _fmt),
          ("psnr_stretched", "PSNR, stretched scale (dB)", _fmt)]
  rows = [f"<tr><td>{label}</td><td class=\"num\">{f(m[k])}</td></tr>"
          for k, label, f in keys if m.get(k) is not None]
  scale = m.get("value_scale")
  if scale and m.get("psnr") is not None:
    rows.append(f'<tr><td colspan="2" class="meta">PSNR, MAE on the 0…1 scale of {_fmt(scale[0])}…'
                f"{_fmt(scale[1])} (--value-range); stretched: each band between the 0.1 and 99.9 "
                "percentiles of the tile's known pixels, as in the README's benchmark</td></tr>")
  return "<table>" + "".join(rows) + "</table>"


def render(run_dir: str, run: dict[str, Any], figures: Sequence[tuple[str, str]],
           thumbs: Sequence[dict[str, Any]], thumb_errors: Sequence[str],
           thumb_total: int) -> str:
  """The report's HTML. Figures and thumbnails are given by relative PNG path."""
  summary = run["summary"]
  model = summary.get("model") or {}
  model_text = (f"<code>{_e(model.get('name', '?'))} {_e(model.get('version', '?'))}</code>"
                if model else "unknown")
  counts = summary.get("counts", {})
  add_up = sum(int(counts.get(k, 0)) for k in OUTCOMES) == int(summary.get("matched", 0))
  add_up_note = ("" if add_up else '<p class="note warn">The counts do not add up to the matched '
                 "inputs.</p>")
  source_note = ('<p class="note warn">No summary.json in this folder (the run may not have '
                 "finished): counts are rebuilt from metrics/ and failed/, and up-to-date skips "
                 "are not known.</p>" if run["summary_rebuilt"] else "")
  fig_html = "\n".join(f'<figure><img src="{_e(src)}" alt="{_e(cap)}"><figcaption>{_e(cap)}'
                       f"</figcaption></figure>" for src, cap in figures)
  if run.get("figures_missing"):
    fig_html = f'<p class="note warn">{_e(run["figures_missing"])}</p>'
  elif not fig_html:
    fig_html = "<p>No restored tiles.</p>"
  tiles = []
  notes = sorted({t["note"] for t in thumbs})
  for t in thumbs:
    m = t["row"].get("metrics", {})
    size = f'width="{t["shape"][1]}" height="{t["shape"][0]}"'
    before = (f'<figure><img src="{_e(t["before"])}" {size} alt="input with restored pixels overlaid">'
              f"<figcaption>before: input, restored pixels in magenta</figcaption></figure>"
              if t.get("before") else "")
    after_caption = ("after: restored output, restored area outlined in magenta" if t.get("before")
                     else "large scene: the engine's preview")
    prov = (f'<figure><img src="{_e(t["provenance"])}" {size} alt="provenance layer">'
            f"<figcaption>provenance</figcaption>{layers.legend_html()}</figure>"
            if t.get("provenance") else "")
    tiles.append(
        f'<div class="tile">{before}'
        f'<figure><img src="{_e(t["after"])}" {size} '
        f'alt="restored output"><figcaption>{after_caption}</figcaption></figure>{prov}'
        f'<div class="info"><div class="path"><code>{_e(t["row"].get("stem") or t["row"]["path"])}'
        f"</code></div>{_metric_lines(m)}<div class=\"meta\">{t['changed'] * 100:.1f} % of "
        f"preview pixels changed</div></div></div>")
  if not thumbs and not thumb_errors:
    tiles.append("<p>No restored tiles to show.</p>")
  thumb_note = ""
  if thumbs:
    thumb_note = (f'<p class="note">The {len(thumbs)} of {thumb_total} restored tiles with the largest '
                  "single hole. Each tile has one 2–98 percentile stretch per band, computed on its "
                  "observed pixels (never no-data) and shared by both images; previews are decimated to at most "
                  f"{THUMB_SIDE} pixels a side. Bands: {_e('; '.join(notes))}.</p>")
  if thumb_errors:
    thumb_note += ('<p class="note warn">Could not preview: '
                   + "; ".join(_e(x) for x in thumb_errors) + "</p>")
  return string.Template(_TEMPLATE).substitute(
      title=_e(run_dir), run_dir=_e(run_dir), model=model_text,
      finished=_e(summary.get("finished_at", "–")),
      made=_e(dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")),
      source_note=source_note, counts=_counts_html(summary), add_up_note=add_up_note,
      timing_line=_timing_html(summary), reasons=_reasons_html(summary),
      dead_table=_dead_html(run["dead"]), figures=fig_html, thumb_note=thumb_note,
      thumbs="\n".join(tiles))


def write_report(output_dir: str, max_thumbnails: int = 6) -> str:
  """Writes ``report.html`` and ``report/*.png`` into a run folder.

  Args:
    output_dir: The run's output folder (local, ``gs://``, ``s3://``).
    max_thumbnails: How many of the largest-hole tiles to preview.

  Returns:
    The path of ``report.html``.

  Raises:
    FileNotFoundError: ``output_dir`` is not a run folder.
  """
  run = load_run(output_dir)
  fig_refs = []
  try:
    figures = make_figures(run["results"])
  except ImportError as e:  # matplotlib is optional: the page still has counts and previews.
    figures = []
    run["figures_missing"] = f"no histograms: {e} (pip install matplotlib)"
  for name, caption, data in figures:
    write_bytes_atomic(_join(output_dir, REPORT_DIR, name), data)
    fig_refs.append((f"{REPORT_DIR}/{name}", caption))
  thumbs, errors = [], []
  chosen = largest_holes(run["results"], max_thumbnails)
  for i, row in enumerate(chosen):
    try:
      t = make_thumbnails(row, output_dir=output_dir)
    except Exception as e:  # pylint: disable=broad-except  (a preview must not sink the report)
      errors.append(f"{row.get('path')}: {type(e).__name__}: {e}")
      continue
    refs = {}
    for which in ("before", "after", "provenance"):
      if t.get(which) is None:
        continue
      name = f"tile{i:02d}_{which}.png"
      write_bytes_atomic(_join(output_dir, REPORT_DIR, name), t[which])
      refs[which] = f"{REPORT_DIR}/{name}"
    thumbs.append(dict(t, row=row, **refs))
  restored_total = sum(1 for r in run["results"] if r.get("outcome") == RESTORED)
  page = render(output_dir, run, fig_refs, thumbs, errors, restored_total)
  path = _join(output_dir, REPORT_HTML)
  write_bytes_atomic(path, page.encode("utf-8"))
  return path


def main(argv: Optional[Sequence[str]] = None) -> int:
  """``cloudfill report RUN_DIR [--thumbnails N]``; returns the exit status."""
  p = argparse.ArgumentParser(prog="cloudfill report",
                              description="Write RUN_DIR/report.html from a finished run's records.")
  p.add_argument("run_dir", help="The run's --output folder (local, gs://, s3://).")
  p.add_argument("--thumbnails", type=int, default=6,
                 help="How many tiles with the largest holes to preview (default 6).")
  args, beam_args = p.parse_known_args(argv)
  if beam_args:  # e.g. --s3_endpoint_url: filesystem options for object storage.
    from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=import-outside-toplevel
    FileSystems.set_options(PipelineOptions(beam_args))
  try:
    print(write_report(args.run_dir, args.thumbnails))
  except FileNotFoundError as e:
    print(f"cloudfill report: {e}", file=sys.stderr)
    return summary_lib.EXIT_USAGE
  return 0



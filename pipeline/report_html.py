"""The report's HTML: the page template (``pipeline/templates/report.html``,
CSS included) filled with the run's counts, dead letters, figures and thumbnails.
"""

from __future__ import annotations

import datetime as dt
import html
import os
import string
from typing import Any, Sequence

import numpy as np

from pipeline import report_layers as layers
from pipeline.report_figures import STAGE_ORDER
from pipeline.report_thumbs import THUMB_SIDE
from pipeline.summary import FAILED_DIR
from transforms.records import FAILED, OUTCOMES

TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates", "report.html")
MAX_DEAD_ROWS = 50


def page_template() -> string.Template:
  """The page, with ``$name`` placeholders (:class:`string.Template`)."""
  with open(TEMPLATE, encoding="utf-8") as f:
    return string.Template(f.read())


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
  cells = [
      f'<div class="count matched"><span class="n" id="count-matched" data-count="'
      f'{int(summary.get("matched", 0))}">{int(summary.get("matched", 0))}</span>matched</div>'
  ]
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
                 f'<td class="path">{_e(d.get("path", ""))}</td><td>{_e(d.get("reason", ""))}</td></tr>' for d in shown)
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
  keys = [("coverage", "coverage", lambda v: f"{v * 100:.1f} %"), ("holes", "holes", _fmt),
          ("largest_hole", "largest hole (px)", _fmt), ("windows", "windows", _fmt), ("seam", "seam", _fmt),
          ("psnr", "PSNR (dB)", _fmt), ("ssim", "SSIM", _fmt), ("mae", "MAE", _fmt),
          ("psnr_stretched", "PSNR, stretched scale (dB)", _fmt)]
  rows = [f"<tr><td>{label}</td><td class=\"num\">{f(m[k])}</td></tr>" for k, label, f in keys if m.get(k) is not None]
  scale = m.get("value_scale")
  if scale and m.get("psnr") is not None:
    rows.append(f'<tr><td colspan="2" class="meta">PSNR, MAE on the 0…1 scale of {_fmt(scale[0])}…'
                f"{_fmt(scale[1])} (--value-range); stretched: each band between the 0.1 and 99.9 "
                "percentiles of the tile's known pixels, as in the README's benchmark</td></tr>")
  return "<table>" + "".join(rows) + "</table>"


def render(run_dir: str, run: dict[str, Any], figures: Sequence[tuple[str, str]], thumbs: Sequence[dict[str, Any]],
           thumb_errors: Sequence[str], thumb_total: int) -> str:
  """The report's HTML. Figures and thumbnails are given by relative PNG path."""
  summary = run["summary"]
  model = summary.get("model") or {}
  model_text = (f"<code>{_e(model.get('name', '?'))} {_e(model.get('version', '?'))}</code>" if model else "unknown")
  counts = summary.get("counts", {})
  add_up = sum(int(counts.get(k, 0)) for k in OUTCOMES) == int(summary.get("matched", 0))
  add_up_note = ("" if add_up else '<p class="note warn">The counts do not add up to the matched '
                 "inputs.</p>")
  source_note = ('<p class="note warn">No summary.json in this folder (the run may not have '
                 "finished): counts are rebuilt from metrics/ and failed/, and up-to-date skips "
                 "are not known.</p>" if run["summary_rebuilt"] else "")
  if run.get("runs", 1) > 1:
    source_note += (f'<p class="note">This folder holds the records of {run["runs"]} runs. The counts are the '
                    "latest run's (<code>summary.json</code>); the dead letters, distributions and tiles below "
                    f"show each input once, by its latest record ({run.get('superseded', 0)} older records left "
                    "out).</p>")
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
              f"<figcaption>before: input, restored pixels in magenta</figcaption></figure>" if t.get("before") else "")
    after_caption = ("after: restored output, restored area outlined in magenta"
                     if t.get("before") else "large scene: the engine's preview")
    prov = (f'<figure><img src="{_e(t["provenance"])}" {size} alt="provenance layer">'
            f"<figcaption>provenance</figcaption>{layers.legend_html()}</figure>" if t.get("provenance") else "")
    tiles.append(f'<div class="tile">{before}'
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
    thumb_note += ('<p class="note warn">Could not preview: ' + "; ".join(_e(x) for x in thumb_errors) + "</p>")
  return page_template().substitute(title=_e(run_dir),
                                    run_dir=_e(run_dir),
                                    model=model_text,
                                    finished=_e(summary.get("finished_at", "–")),
                                    made=_e(dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")),
                                    source_note=source_note,
                                    counts=_counts_html(summary),
                                    add_up_note=add_up_note,
                                    timing_line=_timing_html(summary),
                                    reasons=_reasons_html(summary),
                                    dead_table=_dead_html(run["dead"]),
                                    figures=fig_html,
                                    thumb_note=thumb_note,
                                    thumbs="\n".join(tiles))

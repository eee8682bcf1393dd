"""``--markdown a.json b.json``: a Markdown digest of result files."""

from __future__ import annotations

import json
import os
from typing import Sequence


def _met(goal) -> str:
  """'met', 'not met', or 'n/a' when the section it compares with was not run."""
  return "n/a" if goal is None else ("met" if goal else "not met")


def markdown(paths: Sequence[str]) -> str:
  """A Markdown digest of result JSON files (``--markdown a.json b.json``)."""
  out = []
  for path in paths:
    with open(path, encoding="utf-8") as f:
      r = json.load(f)
    m = r["machine"]
    out.append(f"## {os.path.basename(path)}\n")
    out.append(f"Machine: {m['cpu_model']}, {m['cpus_usable']} CPUs usable, {m['memory_gib']} GiB; "
               f"load average {m['loadavg_start']} at start, {m.get('loadavg_end')} at end; "
               f"other heavy processes at start: {len(m['other_heavy_processes'])}; "
               f"started {m['utc_start']}; commit {m['git_commit']}; "
               f"model {r['model']['name']} {r['model']['version']}; batch size {r.get('batch_size')}.\n")
    if "tiles" in r:
      out.append(f"Tiles: {r['tiles']['source']}; mean coverage {r['tiles']['coverage_mean']:.1%}.\n")
    if "raw" in r:
      raw = r["raw"]
      out.append("| raw loop | tiles/s |\n|---|---|")
      for bs, v in raw["by_batch"].items():
        out.append(f"| restore, batch {bs} | {v['tiles_per_s']:.2f} |")
      if raw.get("xla_cpu"):
        x = raw["xla_cpu"]
        out.append(f"| restore under XLA (jit_compile), batch {x['batch']} | {x['tiles_per_s']:.2f} "
                   f"(first call {x['first_call_seconds']:.0f} s) |")
      out.append(f"| serving_default + Example (de)serialisation, batch {raw['batch_size']} | "
                 f"{raw['serving_default_tiles_per_s']:.2f} |\n")
    for key in ("pipeline_baseline", "pipeline"):
      if key not in r:
        continue
      if key == "pipeline_baseline" or "pipeline_baseline" in r:
        out.append(f"{'Baseline' if key == 'pipeline_baseline' else 'This checkout'}: "
                   f"{r[key].get('commit') or r[key].get('root')}\n")
      out.append("| pipeline (DirectRunner) | backend | tiles/s | % of raw | goal 85 % | >= GDAL 1 core "
                 "| run() s | imports s | process s | batch mean |\n|---|---|---|---|---|---|---|---|---|---|")
      for p in r[key]["runs"]:
        bm = p.get("beam_metrics", {}).get("BatchElements:batch_size", {})
        ratio = p.get("ratio_to_raw")
        out.append(f"| {p['mode']} x{p['workers']} | {p['backend']} | {p['tiles_per_s']:.2f} | "
                   f"{'' if ratio is None else f'{100 * ratio:.0f} %'} | "
                   f"{_met(p.get('goal_85pct_of_raw'))} | "
                   f"{_met(p.get('goal_ge_gdal_1core'))} | {p['seconds']:.1f} | "
                   f"{p['import_seconds']:.1f} | {p['process_wall_seconds']:.1f} | "
                   f"{bm.get('mean', float('nan')):.1f} |")
      out.append("")
      for st in r[key].get("startups") or [s for s in [r[key].get("startup")] if s]:
        out.append(f"\nStart-up probe ({st['mode']}, {st['backend']}): {st['tiles']} tiles in "
                   f"{st['seconds']:.1f} s; marginal rate {st.get('marginal_tiles_per_s') or 0:.2f} tiles/s" +
                   (f" = {100 * st['marginal_ratio_to_raw']:.0f} % of raw" if st.get("marginal_ratio_to_raw") else "") +
                   ".\n")
    if "fillers" in r:
      out.append(f"| filler ({r['fillers']['source']}, 1 thread) | tiles/s | tiles timed |\n|---|---|---|")
      for k, v in r["fillers"]["by_filler"].items():
        out.append(f"| {k} | {v.get('tiles_per_s', float('nan')):.2f} | {v.get('tiles', '')} |")
      out.append("")
    if "stages" in r:
      st = r["stages"]
      out.append(f"Per-step cost per tile (ms, median of {st['tiles']} tiles; model "
                 f"{st['model_ms_per_tile']:.1f} ms/tile at the pipeline's batch size):\n")
      out.append("| step | ms/tile | % of model |\n|---|---|---|")
      for k, v in sorted(st["ms_per_tile"].items(), key=lambda kv: -kv[1]):
        out.append(f"| {k} | {v:.2f} | {100 * v / st['model_ms_per_tile']:.1f} % |")
      out.append(f"\nNative path overhead {st['native_overhead_ms_per_tile']:.1f} ms/tile: serial ceiling "
                 f"{100 * st['predicted_native_ratio_serial']:.0f} % of the raw loop "
                 f"(tfx: {100 * st['predicted_tfx_ratio_serial']:.0f} %)." +
                 (f" With zstd level 1 GeoTIFFs: {100 * st['predicted_native_ratio_serial_with_zstd1']:.0f} %;"
                  f" tfx with wire-format Examples and zstd: "
                  f"{100 * st['predicted_tfx_ratio_serial_with_wire_format_and_zstd1']:.0f} %."
                  if "predicted_native_ratio_serial_with_zstd1" in st else "") + "\n")
    if "profile" in r and "share" in r["profile"]:
      out.append(f"py-spy profile of one in_memory native run ({r['profile']['run']['restored']} tiles, "
                 f"{r['profile']['run']['seconds']:.1f} s):\n\n| where | share |\n|---|---|")
      for k, v in r["profile"]["share"].items():
        out.append(f"| {k} | {100 * v:.1f} % |")
      out.append("")
    if "tflite" in r:
      t = r["tflite"]
      out.append(f"TFLite against the SavedModel ({t['windows']} windows, {t['threads']} threads; "
                 f"{t['note']}):\n\n| model | ms/window |\n|---|---|")
      for k, v in t["ms_per_window"].items():
        out.append(f"| {k} | {v:.1f} |")
      out.append("")
    if "gpu" in r:
      g = r["gpu"]
      out.append(f"GPU: {g.get('gpu') or g.get('note')}\n")
      for row in g.get("sweep", []):
        out.append(f"- batch {row['batch']}, XLA {row['xla']}: " +
                   (f"{row['windows_per_s']:.1f} windows/s" if "windows_per_s" in row else row["error"]))
      if g.get("mixed_precision_error"):
        out.append(f"- mixed precision: {g['mixed_precision_error'][:160]}")
      out.append("")
    if "large" in r:
      lg = r["large"]
      out.append("| scene | path | coverage | windows | pipeline s | process s | peak RSS MiB | input MiB "
                 "| windows/s |\n|---|---|---|---|---|---|---|---|---|")
      for row in lg["runs"]:
        out.append(f"| {row['size']}² | {row.get('path')} | {row['coverage']:.1%} | {row.get('windows')} | "
                   f"{row.get('pipeline_wall_seconds')} | {row['process_wall_seconds']:.1f} | "
                   f"{row['peak_rss_mib']:.0f} | {row['input_mib']:.0f} | "
                   f"{row.get('windows_per_s', float('nan')):.2f} |")
      if "time_exponent" in lg:
        out.append(f"\nTime grows as pixels^{lg['time_exponent']:.2f}, peak RSS as "
                   f"pixels^{lg['rss_exponent']:.2f} (log-log fit).\n")
  return "\n".join(out) + "\n"

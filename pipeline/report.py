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
import sys
from typing import Optional, Sequence

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import summary as summary_lib
from pipeline.report_data import load_run
from pipeline.report_figures import make_figures
from pipeline.report_html import render
from pipeline.report_thumbs import (
    THUMB_SIDE,
    display_bands,
    largest_holes,  # noqa: F401  (the report's API)
    make_thumbnails,
    stretch)
from transforms.atomic_write import write_bytes_atomic
from transforms.records import RESTORED

REPORT_HTML = "report.html"
REPORT_DIR = "report"


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
    write_bytes_atomic(FileSystems.join(output_dir, REPORT_DIR, name), data)
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
      write_bytes_atomic(FileSystems.join(output_dir, REPORT_DIR, name), t[which])
      refs[which] = f"{REPORT_DIR}/{name}"
    thumbs.append(dict(t, row=row, **refs))
  restored_total = sum(1 for r in run["results"] if r.get("outcome") == RESTORED)
  page = render(output_dir, run, fig_refs, thumbs, errors, restored_total)
  path = FileSystems.join(output_dir, REPORT_HTML)
  write_bytes_atomic(path, page.encode("utf-8"))
  return path


def main(argv: Optional[Sequence[str]] = None) -> int:
  """``cloudfill report RUN_DIR [--thumbnails N]``; returns the exit status."""
  p = argparse.ArgumentParser(prog="cloudfill report",
                              description="Write RUN_DIR/report.html from a finished run's records.")
  p.add_argument("run_dir", help="The run's --output folder (local, gs://, s3://).")
  p.add_argument("--thumbnails",
                 type=int,
                 default=6,
                 help="How many tiles with the largest holes to preview (default 6).")
  args, beam_args = p.parse_known_args(argv)
  if beam_args:  # e.g. --s3_endpoint_url: filesystem options for object storage.
    FileSystems.set_options(PipelineOptions(beam_args))
  try:
    print(write_report(args.run_dir, args.thumbnails))
  except FileNotFoundError as e:
    print(f"cloudfill report: {e}", file=sys.stderr)
    return summary_lib.EXIT_USAGE
  return 0

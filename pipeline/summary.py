"""The run summary and manifest: every input accounted for, once.

Each matched input ends as one outcome record (restored, skipped or failed);
they are combined into ``summary.json`` (counts that add up to the inputs,
aggregate metrics and per-stage timings) and ``manifest.json`` (which input
ended how, with the model version), both written when the run ends.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import time
from typing import Any, Iterable, Optional, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

from pipeline import runlock
# The run's exit statuses, re-exported: their home is pipeline.usage (imported by `cloudfill --version` alone).
from pipeline.usage import EXIT_OK, EXIT_PIPELINE_FAILED, EXIT_SOME_FAILED, EXIT_USAGE  # pylint: disable=unused-import
from transforms.atomic_write import write_bytes_atomic
from transforms.records import FAILED, OUTCOMES, RESTORED, SKIPPED, DeadLetter, TilePair, TileResult

SUMMARY = "summary.json"
MANIFEST = "manifest.json"
# Each run's metrics-{run}-*.jsonl and dead-letters-{run}-*.jsonl go in these folders of the output.
METRICS_DIR = "metrics"
FAILED_DIR = "failed"

# Exit statuses of ``cloudfill run`` (documented in the README).


def from_result(r: TileResult) -> dict[str, Any]:
  return {"path": r.path, "outcome": r.outcome, "output": r.output, "metrics": r.metrics}


def from_dead(d: DeadLetter) -> dict[str, Any]:
  return {"path": d.path, "outcome": d.outcome, "stage": d.stage, "reason": d.reason}


def from_up_to_date(p: TilePair) -> dict[str, Any]:
  return {"path": p.image_path, "outcome": SKIPPED, "stage": "incremental", "reason": "output up to date"}


def _stats(values: list[float]) -> Optional[dict[str, float]]:
  v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
  if v.size == 0:
    return None
  return {
      "mean": float(v.mean()),
      "p50": float(np.percentile(v, 50)),
      "p95": float(np.percentile(v, 95)),
      "min": float(v.min()),
      "max": float(v.max())
  }


# The reason given for a matched input that reached no outcome.
LOST_REASON = ("no outcome: the input was lost between the pipeline's stages (a defect of cloudfill or of the "
               "runner, please report it); a rerun restores it")


def lost_letters(records: Iterable[dict[str, Any]], matched: Iterable[str]) -> list[DeadLetter]:
  """A failed dead letter (stage ``pipeline``) for each ``matched`` path that has no outcome record."""
  seen = {r["path"] for r in records}
  return [DeadLetter(path, "pipeline", LOST_REASON) for path in sorted(set(matched) - seen)]


def summarize(records: Iterable[dict[str, Any]],
              model: dict[str, Any],
              run_id: str = "",
              lost: Sequence[DeadLetter] = ()) -> tuple[dict, dict]:
  """Builds (summary, manifest) from every input's outcome record.

  Args:
    records: One outcome record per input (:func:`from_result`, :func:`from_dead`, …).
    model: What the summary says about the model.
    run_id: The run's id.
    lost: The dead letters of matched inputs without an outcome record
      (:func:`lost_letters`): each counts as failed, and ``counts_add_up`` is
      then false: the pipeline itself lost it.
  """
  records = list(records)
  paths = [r["path"] for r in records]
  records = sorted(records + [from_dead(d) for d in lost], key=lambda r: r["path"])
  counts = {k: 0 for k in OUTCOMES}
  for r in records:
    counts[r["outcome"]] += 1
  restored = [r["metrics"] for r in records if r["outcome"] == RESTORED]
  metric_keys = ("coverage", "holes", "largest_hole", "seam", "block", "psnr", "ssim", "mae", "spectral_angle_deg")
  aggregates = {k: s for k in metric_keys if (s := _stats([m.get(k) for m in restored])) is not None}
  stages = sorted({k for m in restored for k in m.get("seconds", {})})
  timings = {k: _stats([m["seconds"].get(k) for m in restored if k in m.get("seconds", {})]) for k in stages}
  reasons: dict[str, int] = {}
  for r in records:
    if r["outcome"] != RESTORED:
      key = f"{r['outcome']}: {r.get('stage')}: {r.get('reason', '')[:120]}"
      reasons[key] = reasons.get(key, 0) + 1
  guide_counts = {
      "guided": sum(1 for m in restored if m.get("guided") is True),
      "unguided": sum(1 for m in restored if m.get("guided") is False)
  }
  summary = {
      "run_id": run_id,
      "matched": len(records),
      "counts": counts,
      # Every input has exactly one outcome, and none was lost on the way.
      "counts_add_up": sum(counts.values()) == len(records) and len(set(paths)) == len(paths) and not lost,
      "lost": len(lost),
      "model": model,
      "metrics": aggregates,
      "seconds_per_tile": timings,
      "reasons": reasons,
      "unfilled_pixels": int(sum(m.get("unfilled") or 0 for m in restored)),
      "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
  }
  if any("guided" in m for m in restored):  # --guide was given
    summary["guide"] = guide_counts
  manifest = {
      "run_id":
          run_id,
      "model":
          model,
      RESTORED: [{
          "path": r["path"],
          "output": r["output"]
      } for r in records if r["outcome"] == RESTORED],
      SKIPPED: [{
          "path": r["path"],
          "reason": r.get("reason")
      } for r in records if r["outcome"] == SKIPPED],
      FAILED: [{
          "path": r["path"],
          "stage": r.get("stage"),
          "reason": r.get("reason")
      } for r in records if r["outcome"] == FAILED],
  }
  return summary, manifest


def remove_stale_temporaries(output_dir: str, keep: str = "") -> list[str]:
  """Deletes the temporary files an interrupted earlier run left in ``output_dir``.

  They are :func:`transforms.atomic_write.write_bytes_atomic`'s ``.NAME.HEX.tmp``
  files (local outputs; object-storage uploads leave nothing), Beam's
  ``beam-temp-*`` folders under ``metrics/`` and ``failed/``, and the window
  spills of scenes never assembled (``.work/``; a finished run has removed its
  own). Names holding ``keep`` (the current run's id) are left alone. One run
  at a time writes into an output folder (:mod:`pipeline.runlock`), so what
  is left is an interrupted run's.

  Returns:
    The paths deleted.
  """
  subdirs = (METRICS_DIR, FAILED_DIR)
  if FileSystems.get_scheme(output_dir) is None:
    root = glob.escape(os.path.abspath(output_dir))  # Its name is literal, not a pattern.
    patterns = [
        os.path.join(root, ".*.tmp"),
        os.path.join(root, "restored", ".*.tmp"),
        os.path.join(root, "preview", ".*.tmp"),
        os.path.join(root, "provenance", ".*.tmp")
    ]
    patterns += [os.path.join(root, d, "beam-temp-*") for d in subdirs] + [os.path.join(root, ".work")]
    found = [p for pattern in patterns for p in glob.glob(pattern) if not keep or keep not in p]
    for path in found:
      if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
      else:
        os.remove(path)
    return found
  patterns = [FileSystems.join(output_dir, d, "beam-temp-**") for d in subdirs]
  patterns.append(FileSystems.join(output_dir, ".work", "**"))
  found = [m.path for r in FileSystems.match(patterns) for m in r.metadata_list if not keep or keep not in m.path]
  if found:
    FileSystems.delete(found)
  return found


class WriteSummary(beam.DoFn):
  """Writes ``summary.json`` and ``manifest.json`` from all outcome records."""

  def __init__(self, output_dir: str, model: dict[str, Any], run_id: str):
    self._output = output_dir
    self._model = model
    self._run_id = run_id

  def process(self, records: list[dict[str, Any]], matched: Optional[list[str]] = None):
    lost = lost_letters(records, matched or ())
    if lost:
      # Their dead letters, beside the pipeline's own: every input ends restored, skipped or dead-lettered.
      write_bytes_atomic(FileSystems.join(self._output, FAILED_DIR, f"lost-{self._run_id}.jsonl"),
                         "".join(d.to_json() + "\n" for d in lost).encode())
      logging.getLogger(__name__).error("%d matched inputs reached no outcome (lost in the pipeline), e.g. %s",
                                        len(lost), lost[0].path)
    summary, manifest = summarize(records, self._model, self._run_id, lost)
    write_bytes_atomic(FileSystems.join(self._output, MANIFEST), json.dumps(manifest, indent=1).encode())
    write_bytes_atomic(FileSystems.join(self._output, SUMMARY), json.dumps(summary, indent=1).encode())
    # Every tile of this run is written by now: leftovers are a killed run's.
    try:
      stale = remove_stale_temporaries(self._output, keep=self._run_id)
      if stale:
        logging.getLogger(__name__).warning("removed %d temporary files of an interrupted run: %s", len(stale),
                                            stale[:5])
    except Exception as e:  # pylint: disable=broad-except
      logging.getLogger(__name__).warning("could not remove stale temporary files: %s", e)
    runlock.RunLock(runlock.lock_path(self._output), self._run_id).release()  # Only if still ours.
    yield summary


def read_json(path: str) -> Optional[dict]:
  """The JSON object at ``path`` on any Beam filesystem, or None when there is no such file."""
  if not FileSystems.exists(path):
    return None
  with FileSystems.open(path) as f:
    return json.loads(f.read().decode("utf-8"))


def exit_status(summary: dict[str, Any]) -> int:
  """0 when nothing failed, 3 when some inputs were dead-lettered as failed."""
  return EXIT_SOME_FAILED if summary["counts"][FAILED] else EXIT_OK

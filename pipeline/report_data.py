"""The report's input: a finished run's records, read from any filesystem.

``summary.json``, ``metrics/*.jsonl`` and ``failed/*.jsonl`` of a run folder
(local, ``gs://``, ``s3://``), through Beam's ``FileSystems``; when the
summary is missing it is rebuilt from the records.

A folder restored incrementally holds the records of every run into it
(``metrics-{run}-*.jsonl``; run ids sort by start time). The report shows
each input once, by its latest record: an input restored again with
``--overwrite``, or restored after it failed, is not counted twice. Inputs a
later run skipped as up to date keep the record of the run that wrote them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from apache_beam.io.filesystems import FileSystems

from pipeline import summary as summary_lib
from pipeline.summary import FAILED_DIR, METRICS_DIR
from transforms.raster_io import read_bytes
from transforms.records import FAILED

# The run id in a record file's name (pipeline.run.new_run_id): UTC start time, then 6 hex digits.
_RUN_ID = re.compile(r"(\d{8}T\d{6}Z-[0-9a-f]{6})")


def run_of(path: str) -> str:
  """The run id in a record file's name, or "" (sorts first) for a file not named by a run."""
  found = _RUN_ID.search(path.rsplit("/", 1)[-1])
  return found.group(1) if found else ""


def _read_jsonl(folder: str) -> list[tuple[str, dict[str, Any]]]:
  """``(run id, row)`` for every JSON line of ``folder/*.jsonl`` (any filesystem), oldest run first."""
  rows: list[tuple[str, dict[str, Any]]] = []
  try:
    found = FileSystems.match([FileSystems.join(folder, "*.jsonl")])[0].metadata_list
  except Exception:  # pylint: disable=broad-except  (no such folder)
    return rows
  for meta in sorted(found, key=lambda m: (run_of(m.path), m.path)):
    text = read_bytes(meta.path).decode("utf-8")
    for line in text.splitlines():
      line = line.strip()
      if line:
        try:
          rows.append((run_of(meta.path), json.loads(line)))
        except json.JSONDecodeError:
          continue
  return rows


def latest_per_input(results: list[tuple[str, dict]], dead: list[tuple[str, dict]]) -> tuple[list, list, int]:
  """Each input's latest record over all runs (restored or dead letter).

  Returns:
    ``(results, dead, superseded)``: the rows kept, in their runs' order, and
    how many older rows were left out. Within one run, a restored record wins
    over a dead letter of the same input (e.g. the summary's ``lost`` letter
    cannot name an input that was restored).
  """
  latest: dict[str, tuple[tuple[str, int], int, str, dict]] = {}
  for kind, rows in (("dead", dead), ("results", results)):
    for i, (run, row) in enumerate(rows):
      order = (run, 1 if kind == "results" else 0)
      key = row.get("path", f"#{kind}{i}")
      if key not in latest or order >= latest[key][0]:
        latest[key] = (order, i, kind, row)
  kept = sorted(latest.values(), key=lambda v: (v[0][0], v[1]))
  out_results = [row for _, _, kind, row in kept if kind == "results"]
  out_dead = [row for _, _, kind, row in kept if kind == "dead"]
  return out_results, out_dead, len(results) + len(dead) - len(kept)


def load_run(run_dir: str) -> dict[str, Any]:
  """Reads a run's records.

  Returns:
    A dict with ``summary`` (``summary.json``: the latest run's, or one
    rebuilt from the records when the file is missing, flagged by
    ``summary_rebuilt``), ``results`` (``metrics/*.jsonl`` rows) and ``dead``
    (``failed/*.jsonl`` rows), each input's latest only
    (:func:`latest_per_input`), ``runs`` (how many runs wrote records) and
    ``superseded`` (older records left out).

  Raises:
    FileNotFoundError: the folder holds neither a summary nor any record.
  """
  all_results = _read_jsonl(FileSystems.join(run_dir, METRICS_DIR))
  all_dead = _read_jsonl(FileSystems.join(run_dir, FAILED_DIR))
  runs = len({run for run, _ in all_results + all_dead})
  results, dead, superseded = latest_per_input(all_results, all_dead)
  summary = summary_lib.read_json(FileSystems.join(run_dir, summary_lib.SUMMARY))
  rebuilt = False
  if summary is None:
    if not results and not dead:
      raise FileNotFoundError(f"{run_dir} holds no {summary_lib.SUMMARY}, metrics or dead letters: "
                              "is it a cloudfill run folder?")
    records = [{
        "path": r["path"],
        "outcome": r["outcome"],
        "output": r.get("output"),
        "metrics": r.get("metrics", {})
    } for r in results]
    records += [{
        "path": d["path"],
        "outcome": d.get("outcome", FAILED),
        "stage": d.get("stage"),
        "reason": d.get("reason", "")
    } for d in dead]
    summary, _ = summary_lib.summarize(records, model={})
    rebuilt = True
  return {
      "summary": summary,
      "summary_rebuilt": rebuilt,
      "results": results,
      "dead": dead,
      "runs": runs,
      "superseded": superseded
  }

"""The report's input: a finished run's records, read from any filesystem.

``summary.json``, ``metrics/*.jsonl`` and ``failed/*.jsonl`` of a run folder
(local, ``gs://``, ``s3://``), through Beam's ``FileSystems``; when the
summary is missing it is rebuilt from the records.
"""

from __future__ import annotations

import json
from typing import Any

from apache_beam.io.filesystems import FileSystems

from pipeline import summary as summary_lib
from pipeline.summary import FAILED_DIR, METRICS_DIR
from transforms.raster_io import read_bytes
from transforms.records import FAILED


def _read_jsonl(folder: str) -> list[dict[str, Any]]:
  """Every JSON line of ``folder/*.jsonl`` (any filesystem), in file order."""
  rows: list[dict[str, Any]] = []
  try:
    found = FileSystems.match([FileSystems.join(folder, "*.jsonl")])[0].metadata_list
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


def load_run(run_dir: str) -> dict[str, Any]:
  """Reads a run's records.

  Returns:
    A dict with ``summary`` (``summary.json``, or one rebuilt from the records
    when the file is missing, flagged by ``summary_rebuilt``), ``results``
    (``metrics/*.jsonl`` rows) and ``dead`` (``failed/*.jsonl`` rows).

  Raises:
    FileNotFoundError: the folder holds neither a summary nor any record.
  """
  results = _read_jsonl(FileSystems.join(run_dir, METRICS_DIR))
  dead = _read_jsonl(FileSystems.join(run_dir, FAILED_DIR))
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
  return {"summary": summary, "summary_rebuilt": rebuilt, "results": results, "dead": dead}

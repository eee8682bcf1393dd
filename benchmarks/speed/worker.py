"""The worker mode (``python -m benchmarks.speed --worker -- ARGV``): one pipeline
run in this process, its timings printed as one JSON line."""

from __future__ import annotations

import json
import os
import resource
import time
from typing import Sequence

from benchmarks.speed import base
from pipeline import options as cli_options
from pipeline import summary as summary_lib
from pipeline.run import run


def worker(argv: Sequence[str]) -> int:
  """Runs the pipeline once in this process and prints its timings as JSON."""
  args, _ = cli_options.parse(argv)
  t_imp = time.perf_counter()
  if args.backend != "tflite":  # A tflite run never imports TensorFlow (model_loader/lite.py).
    import tensorflow  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  imports = time.perf_counter() - t_imp
  t0 = time.perf_counter()
  result = run(argv)
  state = result.wait_until_finish()
  seconds = time.perf_counter() - t0
  with open(os.path.join(args.output, summary_lib.SUMMARY), encoding="utf-8") as f:
    summary = json.load(f)
  beam_metrics = {}
  try:
    q = result.metrics().query()
    for c in q.get("counters", []):
      beam_metrics[f"{c.key.metric.namespace}:{c.key.metric.name}"] = c.committed
    for d in q.get("distributions", []):
      v = d.committed
      if v is not None and v.count:
        beam_metrics[f"{d.key.metric.namespace}:{d.key.metric.name}"] = {
            "count": v.count,
            "mean": v.sum / v.count,
            "min": v.min,
            "max": v.max
        }
  except Exception as e:  # pylint: disable=broad-except
    beam_metrics["error"] = str(e)
  print(base.RESULT_TAG + json.dumps({
      "state": str(state),
      "seconds": seconds,
      "import_seconds": imports,
      "restored": summary["counts"]["restored"],
      "counts": summary["counts"],
      "seconds_per_tile": summary.get("seconds_per_tile"),
      "maxrss_mib_self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      "maxrss_mib_children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
      "beam_metrics": beam_metrics
  }),
        flush=True)
  return 0

"""A py-spy sampling profile of one in_memory native run, attributed to pipeline steps."""

from __future__ import annotations

import collections
import os
import shutil
import sys
from typing import Any

from benchmarks import common
from benchmarks.speed import runs

PROFILE_BUCKETS = (  # (bucket, substrings of a py-spy frame "Class.func (path:line)"), leaf up.
    ("imports", ("_find_and_load",)),
    ("model: restore signature (TF)", ("LoadedModel.__call__ (model_loader", "run_inference (model_loader")),
    ("model: tfx-bsl", ("tfx_bsl",)),
    ("model load + launch check", ("LoadedModel.__init__", "load_model (model_loader", "check_model_early",
                                   "check_model (model_loader", "stage_locally")),
    ("decode (read + GDAL/PIL decode + mask)", ("decode_pair (transforms",)),
    ("cut windows", ("cut (transforms/window.py",)),
    ("sparsify", ("sparsify (transforms",)),
    ("composite", ("composite (transforms/composite.py", "blend (transforms")),
    ("encode + write GeoTIFF", ("encode_raster (transforms", "write_bytes_atomic (transforms",
                                "write_all_atomic (transforms")),
    ("measure (metrics)", ("measure (transforms/write.py",)),
    ("tfx: to_example", ("to_example (model_loader",)),
    ("beam coders / pickling", ("apache_beam/coders/", "pickle", "dill", "cloudpickle")),
    ("batching (BatchElements)", ("BatchElements", "_BatchSizeEstimator", "BatchingDoFn")),
    ("matching files", ("MatchFiles", "apache_beam/io/fileio", "PairWithMask")),
    ("graph construction", ("build (pipeline/graph.py",)),
)


def attribute_profile(raw: str) -> tuple[dict[str, float], int]:
  """Shares of a py-spy ``--format raw`` profile per pipeline step (main thread)."""
  buckets: collections.Counter = collections.Counter()
  with open(raw, encoding="utf-8", errors="replace") as f:
    for line in f:
      stack, _, count = line.rstrip("\n").rpartition(" ")
      if not count.isdigit():
        continue
      n = int(count)
      frames = stack.split(";")
      # The in_memory runner processes bundles on the main thread: keep its
      # samples (busy or waiting on TensorFlow's threads), drop Beam's idle
      # service threads (gRPC, data plane).
      # Only the timed region: pipeline.run.run() (the in_memory runner runs
      # the whole pipeline inside it); the worker's own imports are excluded.
      if not any(fr.startswith("run (") and "pipeline/run.py" in fr or fr.startswith("run (run.py") for fr in frames):
        continue
      in_bundle = any("process_bundle" in fr for fr in frames)
      label = "other: Beam runner (in bundles)" if in_bundle else "other: Beam runner start/finish"
      for fr in reversed(frames):
        hit = next((b for b, keys in PROFILE_BUCKETS if any(k in fr for k in keys)), None)
        if hit:
          label = hit
          break
      buckets[label] += n
  total = sum(buckets.values()) or 1
  return {k: v / total for k, v in buckets.most_common()}, total


def bench_profile(images: str, masks: str, work: str, batch_size: int, rate: int, timeout: float) -> dict[str, Any]:
  """A py-spy profile of one in_memory native run, attributed to pipeline steps."""
  pyspy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
  if not os.path.exists(pyspy):
    common.log("  py-spy not installed (pip install py-spy): no profile")
    return {"error": "py-spy not installed"}
  raw = os.path.join(work, "profile.txt")
  output = os.path.join(work, "out_profile")
  shutil.rmtree(output, ignore_errors=True)
  argv = runs.pipeline_argv(images, masks, output, "native", "in_memory", batch_size, 1)
  r = runs.run_worker(argv,
                      os.path.join(work, "log_profile.txt"),
                      timeout,
                      wrap=[pyspy, "record", "--rate",
                            str(rate), "--format", "raw", "--idle", "--output", raw, "--"])
  share, total = attribute_profile(raw)
  common.log(f"  py-spy profile ({r['restored']} tiles, {r['seconds']:.1f} s, main thread, "
             f"{total} samples at {rate} Hz incl. waits):")
  for k, v in share.items():
    common.log(f"    {k:45s} {100 * v:5.1f} %")
  return {"samples": total, "rate_hz": rate, "share": share, "run": r, "raw_profile": raw}

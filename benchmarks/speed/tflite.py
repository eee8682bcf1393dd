"""``tflite``: the TFLite fp16 and INT8 exports (``training.export.export_tflite``, XNNPACK,
one window a call: their shape is fixed at ``[1, W, W, C]``) against the SavedModel's
``restore`` signature, on the pipeline's own windows, ms per window.

Speed only: the generator is rebuilt untrained with the default architecture (the weights do
not change the time) and INT8 is calibrated on the timed windows themselves; whether a backend
is worth it also needs its quality with the trained weights (not measured here).
"""

from __future__ import annotations

import os
import time
from typing import Any

from benchmarks import common
from benchmarks.speed import base
from model_loader import native
from model_loader.contract import ALL_INPUTS, ModelCard
from training.export import export_tflite
from training.generator import build_generator


def bench_tflite(tiles, model_dir: str, work: str, rounds: int = 3, threads: int = 0) -> dict[str, Any]:
  # pylint: disable=import-outside-toplevel
  import tensorflow as tf
  card = base.card(model_dir)
  wins = base.windows(tiles[:8], card.window, card.overlap)[:8]
  feed = base.stacked(wins, ALL_INPUTS)
  n = len(feed["image"])
  out_dir = os.path.join(work, "tflite")
  t0 = time.perf_counter()
  gen = build_generator(bands=card.bands, size=64)
  spec = ModelCard(name=card.name,
                   version="speed",
                   bands=card.bands,
                   window=card.window,
                   inputs=ALL_INPUTS,
                   guided=True,
                   context="push_pull")
  paths = export_tflite(gen, spec, out_dir, [{k: v[i:i + 1] for k, v in feed.items()} for i in range(n)])
  export_s = time.perf_counter() - t0
  model = native.LoadedModel(model_dir)
  threads = threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2)
  runners = {}
  for kind, path in paths.items():
    it = tf.lite.Interpreter(model_path=path, num_threads=threads)
    runners[kind] = (it, it.get_signature_runner("serving_default"))  # Keep the interpreter referenced.

  def savedmodel(bs):

    def call():
      for i in range(0, n, bs):
        d = {k: v[i:i + bs] for k, v in feed.items()}
        model(d.pop("image"), d.pop("mask"), **d)

    return call

  def lite(kind):

    def call():
      for i in range(n):
        runners[kind][1](**{k: v[i:i + 1] for k, v in feed.items()})

    return call

  fns = {"savedmodel_batch1": savedmodel(1), f"savedmodel_batch{n}": savedmodel(n)}
  fns.update({f"tflite_{k}": lite(k) for k in runners})
  for f in fns.values():
    f()  # Warm-up.
  total = dict.fromkeys(fns, 0.0)
  for _ in range(rounds):  # Alternating, so a change of load hits every variant alike.
    for k, f in fns.items():
      t = time.perf_counter()
      f()
      total[k] += time.perf_counter() - t
  ms = {k: 1000 * v / (rounds * n) for k, v in total.items()}
  for k, v in ms.items():
    common.log(f"  {k:22s} {v:8.1f} ms/window")
  return {
      "windows": n,
      "threads": threads,
      "export_seconds": export_s,
      "ms_per_window": ms,
      "note": "untrained generator of the default architecture; speed only"
  }

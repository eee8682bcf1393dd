"""On a GPU: batch sizes x XLA with the SavedModel, and float32 vs mixed_float16."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from benchmarks import common
from benchmarks.speed import base
from training.generator import INPUTS, build_generator


def bench_gpu(tiles, model_dir: str, batches: Sequence[int], min_seconds: float, force: bool = False) -> dict[str, Any]:
  """Batch size x XLA sweep of the SavedModel, and mixed precision, on a GPU."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  gpus = tf.config.list_physical_devices("GPU")
  if not gpus and not force:
    common.log("  no GPU visible to TensorFlow: GPU sweep skipped")
    return {"gpu": None, "note": "TensorFlow found no GPU on this machine"}
  out: dict[str, Any] = {"gpu": None, "sweep": [], "mixed_precision": []}
  if gpus:
    details = tf.config.experimental.get_device_details(gpus[0])
    out["gpu"] = details.get("device_name", gpus[0].name)
    out["compute_capability"] = details.get("compute_capability")
    for g in gpus:
      try:
        tf.config.experimental.set_memory_growth(g, True)
      except RuntimeError:
        pass
  card = base.card(model_dir)
  wins = base.windows(tiles, card.window, card.overlap)
  reps = max(1, 256 // max(1, len(wins)))
  loaded = tf.saved_model.load(model_dir)  # Keep it referenced: its variables die with it.
  fn = loaded.signatures["restore"]
  # Every input the signature declares (2.0: image, mask, context, guide, guide_mask).
  names = tuple(sorted(fn.structured_input_signature[1].keys()))
  feed = {k: np.concatenate([v] * reps) for k, v in base.stacked(wins, names).items()}
  total = len(feed["image"])
  plain = lambda d: fn(**d)["restored"]  # noqa: E731
  xla = tf.function(plain, jit_compile=True)

  def part(i: int, bs: int) -> dict:
    return {k: tf.constant(v[i:i + bs]) for k, v in feed.items()}

  for bs in batches:
    for name, f in (("off", plain), ("on", xla)):
      try:
        f(part(0, bs)).numpy()  # Compile / warm up.

        def run_all():
          for i in range(0, total - bs + 1, bs):
            f(part(i, bs)).numpy()

        sec, _ = base.timeit(run_all, min_seconds=min_seconds, min_runs=2)
        n = (total // bs) * bs
        row = {"batch": bs, "xla": name, "windows_per_s": n / sec}
      except Exception as e:  # pylint: disable=broad-except
        row = {"batch": bs, "xla": name, "error": f"{type(e).__name__}: {str(e)[:200]}"}
      out["sweep"].append(row)
      common.log(f"  GPU batch {bs:4d} XLA {name:3s}: " +
                 (f"{row['windows_per_s']:9.1f} windows/s" if "windows_per_s" in row else row["error"]))
  # Mixed precision needs the model rebuilt under the policy (an exported float32
  # SavedModel cannot be switched): same architecture, random weights.
  try:
    import keras  # pylint: disable=import-outside-toplevel
    bs = max(batches)
    gen_feed = {k: np.concatenate([v] * reps)[:bs] for k, v in base.stacked(wins, INPUTS).items()}
    for policy in ("float32", "mixed_float16"):
      keras.mixed_precision.set_global_policy(policy)
      gen = build_generator(bands=card.bands)
      call = tf.function(lambda d, g=gen: g(d, training=False))
      d = {k: tf.constant(v) for k, v in gen_feed.items()}
      call(d)
      sec, _ = base.timeit(lambda: call(d).numpy(), min_seconds=min_seconds, min_runs=3)
      out["mixed_precision"].append({"policy": policy, "batch": bs, "windows_per_s": bs / sec})
      common.log(f"  GPU generator {policy:14s} batch {bs}: {bs / sec:9.1f} windows/s")
    keras.mixed_precision.set_global_policy("float32")
  except Exception as e:  # pylint: disable=broad-except
    out["mixed_precision_error"] = f"{type(e).__name__}: {str(e)[:300]}"
    common.log(f"  mixed precision not measured: {out['mixed_precision_error']}")
  return out

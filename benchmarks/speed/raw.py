"""(a) The bare model: tiles/s of the SavedModel's ``restore`` signature in a tight loop."""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from benchmarks import common
from benchmarks.speed import base
from model_loader import native, tfx


def bench_raw(tiles,
              model_dir: str,
              batch_size: int,
              sweep: Sequence[int],
              min_seconds: float,
              xla: bool = False) -> dict[str, Any]:
  """Tiles/s of the bare ``restore`` signature, and of ``serving_default``."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  card = base.card(model_dir)
  wins = base.windows(tiles, card.window, card.overlap)
  model = native.LoadedModel(model_dir)
  feed = base.stacked(wins, ("image", "mask") + model.input_names)
  images, masks = feed.pop("image"), feed.pop("mask")
  out: dict[str, Any] = {
      "windows": len(wins),
      "tiles": len(tiles),
      "window": card.window,
      "model": {
          "name": card.name,
          "version": card.version
      },
      "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
      "by_batch": {}
  }

  def loop(bs: int, fn) -> tuple[float, float]:
    """(windows/s, process core-ms a window)."""
    fn(images[:bs], masks[:bs], **{k: v[:bs] for k, v in feed.items()})  # Warm-up (tracing, allocation).
    n = 0
    start, cpu = time.perf_counter(), time.process_time()
    while True:
      for i in range(0, len(wins), bs):
        fn(np.stack(list(images[i:i + bs])), np.stack(list(masks[i:i + bs])), **{
            k: np.stack(list(v[i:i + bs])) for k, v in feed.items()
        })
        n += min(bs, len(wins) - i)
      if time.perf_counter() - start >= min_seconds:
        break
    return n / (time.perf_counter() - start), 1000 * (time.process_time() - cpu) / n

  for bs in sorted(set(sweep) | {batch_size}):
    rate, core_ms = loop(bs, model)
    per_tile = core_ms * len(wins) / len(tiles)
    out["by_batch"][str(bs)] = {
        "windows_per_s": rate,
        "tiles_per_s": rate * len(tiles) / len(wins),
        "core_ms_per_tile": per_tile
    }
    common.log(
        f"  raw restore   batch {bs:3d}: {rate * len(tiles) / len(wins):7.2f} tiles/s, {per_tile:6.1f} core-ms a tile")
  out["batch_size"] = batch_size
  out["tiles_per_s"] = out["by_batch"][str(batch_size)]["tiles_per_s"]
  out["core_ms_per_tile"] = out["by_batch"][str(batch_size)]["core_ms_per_tile"]

  loaded = tf.saved_model.load(model_dir)  # Keep it referenced: its variables die with it.
  serve = loaded.signatures["serving_default"]

  def call_serving(im, ma, **extra):
    ex = [tfx.serialize_example(a, b, **{k: v[j] for k, v in extra.items()}) for j, (a, b) in enumerate(zip(im, ma))]
    res = serve(examples=tf.constant(ex))["restored"]
    return [tf.make_ndarray(tf.make_tensor_proto(r)) for r in res.numpy()]

  if xla:  # XLA on CPU: one compilation per batch shape, so only with fixed batches.
    restore = loaded.signatures["restore"]
    jit = tf.function(lambda i, m, e: restore(image=i, mask=m, **e)["restored"], jit_compile=True, autograph=False)
    x0, m0 = tf.constant(images[:batch_size]), tf.constant(masks[:batch_size])
    e0 = {k: tf.constant(v[:batch_size]) for k, v in feed.items()}
    t0 = time.perf_counter()
    ref = model(images[:batch_size], masks[:batch_size], **{k: v[:batch_size] for k, v in feed.items()})
    got = jit(x0, m0, e0).numpy()
    compile_s = time.perf_counter() - t0
    whole = (len(wins) // batch_size) * batch_size
    if whole:
      t0 = time.perf_counter()
      n = 0
      while time.perf_counter() - t0 < min_seconds or n == 0:
        for i in range(0, whole, batch_size):
          jit(tf.constant(images[i:i + batch_size]), tf.constant(masks[i:i + batch_size]), {
              k: tf.constant(v[i:i + batch_size]) for k, v in feed.items()
          }).numpy()
          n += batch_size
      rate = n / (time.perf_counter() - t0)
      out["xla_cpu"] = {
          "batch": batch_size,
          "windows_per_s": rate,
          "tiles_per_s": rate * len(tiles) / len(wins),
          "first_call_seconds": compile_s,
          "max_abs_diff": float(np.abs(ref - got).max())
      }
      common.log(f"  raw restore   batch {batch_size:3d} XLA (jit_compile): "
                 f"{out['xla_cpu']['tiles_per_s']:7.2f} tiles/s (first call {compile_s:.1f} s, "
                 f"max |diff| {out['xla_cpu']['max_abs_diff']:.1e})")

  rate, _ = loop(batch_size, call_serving)
  out["serving_default_tiles_per_s"] = rate * len(tiles) / len(wins)
  common.log(f"  raw serving_default (serialize + parse) batch {batch_size}: "
             f"{out['serving_default_tiles_per_s']:7.2f} tiles/s")
  return out

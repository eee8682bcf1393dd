"""The TFLite backend (``--backend tflite``): the model's dynamic-range TFLite file.

``cloudfill export --tflite-asset`` writes ``assets/cloudfill_dynamic.tflite``
beside the SavedModel: the same generator with int8 weights and float
activations (0.01 dB behind the SavedModel on the quality tiles, and faster on
a CPU; README, "256² tiles under real cloud masks"). Its ``serving_default``
signature takes the model's inputs at one fixed ``[1, W, W, C]`` window, so a
batch runs one window a call: no padding, and the same result for a window
whatever batch it lands in.

Elements and predictions are those of :mod:`model_loader.native`.

The interpreter is LiteRT's (``ai-edge-litert``, a dependency on Linux): it
imports in about 0.1 s where TensorFlow takes seconds, so a worker process that
runs the tflite backend never imports TensorFlow (multi-process start-up).
Without it, TensorFlow's ``tf.lite.Interpreter`` runs the same file.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from model_loader import locate
from model_loader.contract import OUTPUT_RESTORED, TFLITE_ASSET
from model_loader.native import NativeModelHandler, model_feed


def interpreter_class() -> type:
  """LiteRT's ``Interpreter`` where ``ai-edge-litert`` is installed, else TensorFlow's."""
  try:
    from ai_edge_litert.interpreter import Interpreter  # pylint: disable=import-outside-toplevel
  except ImportError:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return tf.lite.Interpreter
  return Interpreter


def tflite_path(local_dir: str) -> str:
  """Where a model folder keeps its TFLite file."""
  return os.path.join(local_dir, "assets", TFLITE_ASSET)


class LiteModel:
  """A model's TFLite file, callable as :class:`model_loader.native.LoadedModel` is.

  Args:
    path: The ``.tflite`` file.
    threads: Interpreter threads (0: every core).
  """

  def __init__(self, path: str, threads: int = 0):
    if not os.path.exists(path):
      raise ValueError(f"no TFLite model at {path}: write one with "
                       "`cloudfill export … --tflite-asset` (the tflite backend runs it)")
    self._interpreter = interpreter_class()(model_path=path, num_threads=threads or os.cpu_count() or 1)
    self._run = self._interpreter.get_signature_runner("serving_default")
    details = self._run.get_input_details()
    self.input_names = tuple(sorted(details))
    self.window = int(details["image"]["shape"][1])
    # One interpreter is not safe to call from two threads at once (Beam may share a model between threads).
    self._lock = threading.Lock()

  def restore(self, images: np.ndarray, masks: np.ndarray, **extra: np.ndarray) -> np.ndarray:
    """``images [N, W, W, C]``, ``masks [N, W, W, 1]`` (and the optional
    inputs, as :meth:`model_loader.native.LoadedModel.__call__`): the
    restored ``[N, W, W, C]``, one window a call."""
    feed = model_feed(self.input_names, images, masks, extra)
    outs = []
    with self._lock:
      for i in range(len(images)):
        out = self._run(**{k: np.ascontiguousarray(v[i:i + 1], np.float32) for k, v in feed.items()})
        outs.append(out[OUTPUT_RESTORED])
    return np.concatenate(outs)

  __call__ = restore

  def declared_inputs(self) -> tuple[str, ...]:
    """``input_names``."""
    return self.input_names


class LiteModelHandler(NativeModelHandler):
  """Runs windows through the model's TFLite file (``model_uri`` None: the
  packaged default model's); the rest is :class:`NativeModelHandler`'s."""

  def load_model(self) -> LiteModel:
    return LiteModel(tflite_path(locate.stage_locally(locate.resolve(self._uri))), self._threads)

  def call_model(self, model: Any, images: np.ndarray, masks: np.ndarray, extra: dict) -> np.ndarray:
    """One window a call already: no padding."""
    return model.restore(images, masks, **extra)

  def get_metrics_namespace(self) -> str:
    return "cloudfill_tflite"

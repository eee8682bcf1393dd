"""A Beam ``ModelHandler`` over ``tf.saved_model.load`` fed numpy batches.

Beam's own TensorFlow handlers load with ``tf.keras.models.load_model``, which
Keras 3 refuses for SavedModel directories (apache/beam#30616); this handler
calls the model's ``restore`` signature directly, which is also faster.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Iterable, Optional, Sequence

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from model_loader import locate
from model_loader.contract import INPUT_IMAGE, INPUT_MASK, OUTPUT_RESTORED, SIGNATURE_RESTORE
from transforms.context import push_pull

# Windows per call of the model (RunInference's batches are split to this).
CALL_BATCH = 8


class LoadedModel:
  """A loaded SavedModel's ``restore`` signature, callable on numpy arrays."""

  def __init__(self, local_dir: str, memory_growth: bool = True):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    if memory_growth:
      for gpu in tf.config.list_physical_devices("GPU"):
        try:
          tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # Already initialised in this process.
          pass
    self._tf = tf
    freeze_long_lived()  # TensorFlow's modules, before loading walks them.
    self._module = tf.saved_model.load(local_dir)
    if SIGNATURE_RESTORE not in self._module.signatures:
      raise ValueError(f"the SavedModel at {local_dir} has no {SIGNATURE_RESTORE!r} signature "
                       f"(it has {sorted(self._module.signatures)})")
    self._fn = self._module.signatures[SIGNATURE_RESTORE]
    # The inputs the signature declares: ("image", "mask") for card 1.0,
    # plus "context", "guide", "guide_mask" for context/guided models.
    self.input_names = tuple(sorted(self._fn.structured_input_signature[1].keys()))

  def __call__(self, images: np.ndarray, masks: np.ndarray, **extra: np.ndarray) -> np.ndarray:
    """Runs ``restore``; ``extra`` arrays (``context``, ``guide``,
    ``guide_mask``, ``[N, H, W, *]``) are passed when the signature declares
    them and ignored otherwise. A declared input not given gets its neutral
    value: ``context`` = each window's own push-pull fill, ``guide`` = 0,
    ``guide_mask`` = 1 (no guide)."""
    tf = self._tf
    feed = model_feed(self.input_names, images, masks, extra)
    # At most CALL_BATCH windows per call: a batch's activations at full
    # resolution are the largest memory of a run (2.0: ~80 channels x 256² a window).
    outs = []
    for i in range(0, len(images), CALL_BATCH):
      out = self._fn(**{k: tf.constant(v[i:i + CALL_BATCH], tf.float32) for k, v in feed.items()})
      outs.append(out[OUTPUT_RESTORED].numpy())
    return outs[0] if len(outs) == 1 else np.concatenate(outs)

  # Named methods for RunInference's ``--large-model`` sharing: the workers
  # then hold a multiprocessing proxy, which forwards public methods only
  # (neither ``__call__`` nor attributes such as ``input_names``).
  def restore(self, images: np.ndarray, masks: np.ndarray, **extra: np.ndarray) -> np.ndarray:
    """The same as calling the model."""
    return self(images, masks, **extra)

  def declared_inputs(self) -> tuple[str, ...]:
    """``input_names``."""
    return self.input_names


def model_feed(names: Sequence[str], images: np.ndarray, masks: np.ndarray, extra: dict) -> dict[str, np.ndarray]:
  """The arrays for a signature declaring ``names``: image, mask, each other
  declared input from ``extra`` where given (not None), else its
  :func:`neutral_input`; inputs not declared are left out."""
  feed = {INPUT_IMAGE: images, INPUT_MASK: masks}
  for name in names:
    if name not in feed:
      feed[name] = extra[name] if extra.get(name) is not None else neutral_input(name, images, masks)
  return feed


def neutral_input(name: str, images: np.ndarray, masks: Optional[np.ndarray] = None) -> np.ndarray:
  """The value of an optional model input that a window does not have
  (``context``: the window's own push-pull fill, never its zeros)."""
  if name == "context":
    if masks is None:
      return images
    return np.stack([push_pull(i, (m[..., 0] < 0.5).astype(np.float32)) for i, m in zip(images, masks)])
  if name == "guide":
    return np.zeros_like(images)
  if name == "guide_mask":
    return np.ones(images.shape[:-1] + (1,), np.float32)
  raise ValueError(f"the model's restore signature takes an unknown input {name!r}")


def set_threads(threads: int) -> bool:
  """TensorFlow's intra- and inter-op threads in this process; False when
  TensorFlow already started its thread pools (then they stay as they are)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  try:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
  except RuntimeError:  # "... cannot be modified after initialization"
    return False
  return True


def threads_per_worker(workers: int, cores: Optional[int] = None) -> int:
  """TensorFlow threads for each of ``workers`` processes on one machine:
  cores ÷ workers (at least 1), so that the workers' models do not fight
  over the cores while the other workers decode, composite and write."""
  import os  # pylint: disable=import-outside-toplevel
  if cores is None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
  return max(1, cores // max(1, workers))


_LOADED: dict[str, LoadedModel] = {}


def load(local_dir: str) -> LoadedModel:
  """The model at ``local_dir``, loaded once per process.

  The launch check and the DirectRunner's in-process workers then share one
  load instead of paying for two.
  """
  if local_dir not in _LOADED:
    _LOADED[local_dir] = LoadedModel(local_dir)
    freeze_long_lived()
  return _LOADED[local_dir]


def freeze_long_lived() -> None:
  """Moves every object alive now (TensorFlow's modules, the loaded model,
  Beam's) out of the cyclic garbage collector's reach (``gc.freeze``).

  They live as long as the process, about 550 000 of them: each full
  collection walked them all (≈ 0.3 s on 2 cores), and so did the collections
  at interpreter exit (≈ 1 s a process; the DirectRunner stops its worker
  processes one after another). Reference counting still frees them.
  """
  import gc  # pylint: disable=import-outside-toplevel
  gc.freeze()


def check_model(model: LoadedModel, size: int, bands: int) -> None:
  """Fails early when the model does not honour the contract on one window.

  Raises:
    ValueError: wrong output shape or non-finite values.
  """
  rng = np.random.default_rng(0)
  image = rng.uniform(0.2, 0.4, (1, size, size, bands)).astype(np.float32)
  mask = np.zeros((1, size, size, 1), np.float32)
  mask[:, size // 4:size // 2, size // 4:size // 2] = 1
  out = model(image, mask)
  if out.shape != image.shape:
    raise ValueError(f"the model returned shape {out.shape} for input {image.shape}")
  if not np.isfinite(out).all():
    raise ValueError("the model returned non-finite values")


def _with_seconds(window: Any, share: float) -> Any:
  """``window`` with ``share`` seconds added (a new record; ``window`` is not modified)."""
  if dataclasses.is_dataclass(window) and hasattr(window, "seconds"):
    return dataclasses.replace(window, seconds=window.seconds + share)
  return window


def _stacked_inputs(batch: Sequence[Any], declared: Sequence[str]) -> tuple[np.ndarray, np.ndarray, dict]:
  """A batch of windows as the model's arrays: ``(images [N, ...], masks [N, ...],
  {other declared input: [N, ...]})``, an optional input only when every window has it."""
  inputs = [w.model_inputs() if hasattr(w, "model_inputs") else {"image": w.image, "mask": w.mask} for w in batch]
  extra = {
      name: np.stack([i[name] for i in inputs])
      for name in declared
      if name not in ("image", "mask") and all(name in i for i in inputs)
  }
  return np.stack([i["image"] for i in inputs]), np.stack([i["mask"] for i in inputs]), extra


def _padded(a: np.ndarray) -> np.ndarray:
  """``a [N, ...]`` padded with copies of its first window to a multiple of
  :data:`CALL_BATCH`, so that every model call holds exactly that many windows.

  TensorFlow's CPU convolutions round differently with the number of windows
  in a call (up to 2.4e-7 on the 0…1 scale for the default model), and which
  windows share a batch follows the runner's scheduling: without this a
  filled pixel near a rounding boundary could come out 1 DN apart in two runs
  of the same command. For a fixed call size the other windows in the call
  make no difference.
  """
  extra = -len(a) % CALL_BATCH
  return a if not extra else np.concatenate([a, np.repeat(a[:1], extra, axis=0)])


class NativeModelHandler(ModelHandler[Any, PredictionResult, LoadedModel]):
  """Runs windows through the SavedModel's ``restore`` signature.

  Elements are objects with ``image`` ``[S, S, C]`` and ``mask`` ``[S, S, 1]``
  float32 arrays (:class:`transforms.records.Window`); predictions are the
  restored ``[S, S, C]`` arrays. ``model_uri`` None means the default model
  packaged with cloudfill.
  """

  def __init__(self,
               model_uri: Optional[str],
               *,
               min_batch_size: Optional[int] = None,
               max_batch_size: Optional[int] = None,
               max_batch_duration_secs: Optional[int] = None,
               large_model: bool = False,
               model_copies: Optional[int] = None,
               accelerator: Optional[str] = None,
               threads: int = 0):
    super().__init__(min_batch_size=min_batch_size,
                     max_batch_size=max_batch_size,
                     max_batch_duration_secs=max_batch_duration_secs,
                     large_model=large_model,
                     model_copies=model_copies)
    self._uri = model_uri
    self._accelerator = accelerator
    self._threads = threads

  def load_model(self) -> LoadedModel:
    if self._threads and not set_threads(self._threads):  # Before TensorFlow starts its pools.
      import logging  # pylint: disable=import-outside-toplevel
      logging.getLogger(__name__).warning(
          "TensorFlow had started before the model loaded: its threads stay at its default, "
          "not %d per worker", self._threads)
    # Resolved here, on the worker: the packaged default lives where the
    # worker installed cloudfill, not where the launcher did.
    return load(locate.stage_locally(locate.resolve(self._uri)))

  def run_inference(self,
                    batch: Sequence[Any],
                    model: LoadedModel,
                    inference_args: Optional[dict[str, Any]] = None) -> Iterable[PredictionResult]:
    start = time.perf_counter()
    images, masks, extra = _stacked_inputs(batch, model.declared_inputs())
    restored = self.call_model(model, images, masks, extra)
    share = (time.perf_counter() - start) / len(batch)
    # Each window carries its share of the batch's time, on a copy: Beam's
    # elements are immutable (a shallow copy; the arrays are shared, not copied).
    return [PredictionResult(_with_seconds(w, share), r) for w, r in zip(batch, restored)]

  def call_model(self, model: Any, images: np.ndarray, masks: np.ndarray, extra: dict) -> np.ndarray:
    """The model on a batch's arrays, every call padded to :data:`CALL_BATCH` windows (:func:`_padded`)."""
    n = len(images)
    return model.restore(_padded(images), _padded(masks), **{k: _padded(v) for k, v in extra.items()})[:n]

  def get_num_bytes(self, batch: Sequence[Any]) -> int:
    return sum(w.image.nbytes + w.mask.nbytes for w in batch)

  def get_metrics_namespace(self) -> str:
    return "cloudfill_native"

  def get_resource_hints(self) -> dict:
    return {"accelerator": self._accelerator} if self._accelerator else {}

"""Stage 4: run windows through the generator with Beam's ``RunInference``.

Three backends behind one option:

* ``native`` (default): :class:`model_loader.native.NativeModelHandler`, the
  SavedModel's ``restore`` signature on numpy batches.
* ``tflite``: :class:`model_loader.lite.LiteModelHandler`, the model's
  dynamic-range TFLite file, one window a call.
* ``tfx``: tfx-bsl's ``CreateModelHandler`` on ``serving_default``, which
  takes serialized ``tf.train.Example`` (as TF Serving does).

All end as ``(tile_key, WindowResult)``: the generated values at the
window's missing pixels, ready to composite; a tile's only window as
``(tile_key, Solo)``, the tile and that result together; windows of large
scenes as ``(tile_key, SpillRef)`` once their values are spilled. Windows
whose batch failed come out apart, as :class:`WindowFailure` (``failed``).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import apache_beam as beam
from apache_beam.ml.inference.base import RunInference

from model_loader import lite, native, tfx
from transforms import counters, scenes
from transforms.composite import window_result
from transforms.pooled import local_worker_threads
from transforms.records import Solo, Window, WindowFailure

BACKENDS = ("native", "tfx", "tflite")
RESTORED, FAILED = "restored", "failed"  # Infer's outputs.


@dataclasses.dataclass(frozen=True)
class InferSpec:
  """How inference runs.

  Attributes:
    model_uri: The SavedModel directory (local or object storage); None for
      the default model packaged with cloudfill (native backend).
    backend: ``native``, ``tfx`` or ``tflite``.
    overlap: The windows' overlap (for the blending weights).
    min_batch_size, max_batch_size, max_batch_duration_secs: Batching. The
      minimum defaults to the maximum: full batches (Beam's adaptive sizing
      otherwise starts at 1 and averaged 3 windows a call on 64 tiles).
    large_model: Share one model across processes on a worker.
    model_copies: Exact number of model copies per worker (e.g. one per GPU).
    accelerator: A Dataflow accelerator resource hint, e.g.
      ``type:nvidia-l4;count:1;install-nvidia-driver``.
    model_inputs: The inputs the model's ``restore`` signature declares
      (read at launch). Without ``context``, the model's output is blended
      into the window's context by distance from known ground
      (:func:`transforms.composite.legacy_blend`).
  """

  model_uri: Optional[str]
  backend: str = "native"
  overlap: int = 32
  min_batch_size: Optional[int] = None
  max_batch_size: Optional[int] = 16
  max_batch_duration_secs: Optional[int] = None
  large_model: bool = False
  model_copies: Optional[int] = None
  accelerator: Optional[str] = None
  model_inputs: tuple[str, ...] = ("image", "mask")

  def batching(self) -> dict:
    """The options of Beam's ``ModelHandler`` (batch sizes, model sharing)."""
    return dict(min_batch_size=self.min_batch_size,
                max_batch_size=self.max_batch_size,
                max_batch_duration_secs=self.max_batch_duration_secs,
                large_model=self.large_model,
                model_copies=self.model_copies)

  def __post_init__(self):
    if self.backend not in BACKENDS:
      raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
    if self.backend == "tfx" and not self.model_uri:
      raise ValueError("the tfx backend needs a model path")
    if self.backend == "tflite" and self.accelerator:
      raise ValueError("--backend tflite runs on the CPU: drop --accelerator, or use --backend native on a GPU")


def _finish(win: Window, restored, overlap: int, takes_context: bool):
  """``(tile_key, WindowResult)``, ``(tile_key, Solo)`` for a tile's only
  window, or ``(tile_key, SpillRef)`` for scenes."""
  counters.inc("windows_inferred")
  result = window_result(win, restored, overlap, takes_context)
  if win.spill_to:
    return win.tile_key, scenes.spill(result, win.spill_to)
  if win.tile is not None:
    return win.tile_key, Solo(win.tile, result)
  return win.tile_key, result


def _failed(win: Window, reason: str):
  """``(tile_key, WindowFailure)`` (or a :class:`Solo` of it) for a window whose inference failed."""
  counters.inc("failed_infer_windows")
  failure = WindowFailure(y=win.y, x=win.x, reason=reason, scene=bool(win.spill_to))
  return win.tile_key, (Solo(win.tile, failure) if win.tile is not None else failure)


def _one_line(e) -> str:
  return " ".join(f"{type(e).__name__}: {e}".split())[:500]


class _FromPrediction(beam.DoFn):

  def __init__(self, overlap: int, takes_context: bool):
    self._overlap = overlap
    self._context = takes_context

  def process(self, prediction):
    try:
      yield _finish(prediction.example, prediction.inference, self._overlap, self._context)
    except Exception as e:  # pylint: disable=broad-except
      yield _failed(prediction.example, f"the model's output was unusable: {_one_line(e)}")


class _FromTfxPrediction(beam.DoFn):

  def __init__(self, overlap: int, takes_context: bool):
    self._overlap = overlap
    self._context = takes_context

  def process(self, keyed):
    win, log = keyed
    try:
      yield _finish(win, tfx.restored_from_log(log, win.image.shape), self._overlap, self._context)
    except Exception as e:  # pylint: disable=broad-except
      yield _failed(win, f"the model's output was unusable: {_one_line(e)}")


class _FromFailedBatch(beam.DoFn):
  """``(batch, error)`` of RunInference's dead-letter output -> a
  :class:`WindowFailure` per window of the batch."""

  def process(self, failed):
    batch, error = failed
    if isinstance(error, tuple) and len(error) >= 3:  # (type, repr, traceback lines) from Beam.
      text = "".join(error[2]) if isinstance(error[2], (list, tuple)) else str(error[2])
      name = getattr(error[0], "__name__", str(error[0]))
      at = text.rfind(name + ":")
      reason = " ".join((text[at:] if at >= 0 else str(error[1])).split())[:500]
    else:
      reason = _one_line(error)
    for element in batch:
      win = element[0] if isinstance(element, tuple) else element
      yield _failed(win, f"inference failed for its batch: {reason}")


def run_inference_safely(windows, inference: RunInference, to_results: beam.DoFn):
  """Windows through ``inference`` with exception handling: a batch that
  raises becomes a :class:`WindowFailure` per window instead of ending the run.

  Returns:
    ``{"restored": ..., "failed": ...}``: PCollections of ``(tile_key,
    WindowResult | SpillRef | Solo)`` and of ``(tile_key, WindowFailure |
    Solo)``, kept apart: the local runners materialise every Flatten of two
    inputs, so flattening them here would hold every restored window until
    the last batch is inferred, and no tile could be written while the model
    runs.
  """
  main, dlq = windows | "RunInference" >> inference.with_exception_handling()
  good = main | "Sparsify" >> beam.ParDo(to_results)
  bad = dlq.failed_inferences | "FailedBatches" >> beam.ParDo(_FromFailedBatch())
  return {RESTORED: good, FAILED: bad}


def _example(win: Window, names: tuple[str, ...]) -> bytes:
  """The window as the serialized Example the model's ``serving_default`` parses."""
  inputs = win.model_inputs()
  extra = {}
  for name in names:
    if name in ("image", "mask"):
      continue
    extra[name] = inputs[name] if name in inputs else native.neutral_input(name, win.image[None],
                                                                           inputs["mask"][None])[0]
  return tfx.serialize_example(inputs["image"], inputs["mask"], **extra)


@dataclasses.dataclass
class Infer(beam.PTransform):
  """``Window`` -> ``{"restored": (tile_key, result), "failed": (tile_key,
  failure)}`` through ``RunInference`` (:func:`run_inference_safely`)."""

  spec: InferSpec

  def expand(self, windows):
    s = self.spec
    if s.min_batch_size is None and s.max_batch_size:
      s = dataclasses.replace(s, min_batch_size=s.max_batch_size)
    takes_context = "context" in s.model_inputs
    if s.backend in ("native", "tflite"):
      # Worker processes split the cores; one copy shared by them all (--large-model) takes them all.
      threads = 0 if s.large_model else local_worker_threads(windows.pipeline)
      handler_class = native.NativeModelHandler if s.backend == "native" else lite.LiteModelHandler
      handler = handler_class(s.model_uri, **s.batching(), accelerator=s.accelerator, threads=threads)
      return run_inference_safely(windows, RunInference(handler), _FromPrediction(s.overlap, takes_context))
    handler = tfx.create_handler(s.model_uri,
                                 min_batch_size=s.min_batch_size,
                                 max_batch_size=s.max_batch_size,
                                 large_model=s.large_model)
    inference = RunInference(handler)
    if s.accelerator:
      inference = inference.with_resource_hints(accelerator=s.accelerator)
    examples = windows | "ToExample" >> beam.Map(lambda w, names: (w, _example(w, names)), s.model_inputs)
    return run_inference_safely(examples, inference, _FromTfxPrediction(s.overlap, takes_context))

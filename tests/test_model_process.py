"""What loading the model does to its process: the worker thread budget is
set before TensorFlow starts, and the long-lived objects leave the cyclic
collector's reach (``gc.freeze``)."""

import gc
import json
import os
import subprocess
import sys

import pytest

from model_loader import native

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def unfrozen():
  gc.unfreeze()
  yield
  gc.unfreeze()


def test_loading_a_model_freezes_the_objects_alive_then(monkeypatch, unfrozen):
  monkeypatch.setattr(native, "LoadedModel", lambda local_dir: ("model", local_dir))
  monkeypatch.delitem(native._LOADED, "/nowhere/model", raising=False)  # pylint: disable=protected-access
  assert gc.get_freeze_count() == 0
  try:
    assert native.load("/nowhere/model") == ("model", "/nowhere/model")
    assert gc.get_freeze_count() > 0
  finally:
    native._LOADED.pop("/nowhere/model", None)  # pylint: disable=protected-access


def test_the_handler_sets_the_thread_budget_before_it_loads(monkeypatch):
  calls = []
  monkeypatch.setattr(native, "set_threads", lambda n: calls.append(("threads", n)) or True)
  monkeypatch.setattr(native, "load", lambda local_dir: calls.append(("load", local_dir)) or "model")
  monkeypatch.setattr(native.locate, "resolve", lambda uri: "/resolved")
  monkeypatch.setattr(native.locate, "stage_locally", lambda uri: uri)
  assert native.NativeModelHandler(None, threads=1).load_model() == "model"
  assert calls == [("threads", 1), ("load", "/resolved")]
  calls.clear()
  native.NativeModelHandler(None).load_model()  # 0: TensorFlow's default (in-process runs).
  assert calls == [("load", "/resolved")]


def test_a_fresh_worker_process_runs_the_model_on_its_budget():
  """As a multi_processing worker does: the handler's load_model() in a new
  interpreter, then TensorFlow's thread settings and the freeze as they are."""
  code = ("import gc, json, numpy as np, tensorflow as tf\n"
          "from model_loader import native\n"
          "m = native.NativeModelHandler(None, threads=1).load_model()\n"
          "native.check_model(m, 256, 3)\n"
          "print(json.dumps([tf.config.threading.get_intra_op_parallelism_threads(),\n"
          "                  tf.config.threading.get_inter_op_parallelism_threads(), gc.get_freeze_count()]))\n")
  out = subprocess.run([sys.executable, "-c", code],
                       cwd=ROOT,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
                       capture_output=True,
                       text=True,
                       check=True,
                       timeout=300).stdout
  intra, inter, frozen = json.loads(out.strip().splitlines()[-1])
  assert (intra, inter) == (1, 1)
  assert frozen > 100_000  # TensorFlow's modules and the model.


@pytest.mark.parametrize("large_model, expected", [(False, native.threads_per_worker(2)), (True, 0)])
def test_worker_processes_split_the_cores_unless_they_share_one_model(large_model, expected):
  import apache_beam as beam
  from apache_beam.ml.inference.base import RunInference
  from apache_beam.options.pipeline_options import PipelineOptions

  from transforms.infer import Infer, InferSpec
  p = beam.Pipeline(options=PipelineOptions(["--direct_running_mode=multi_processing", "--direct_num_workers=2"]))
  _ = p | beam.Create([]) | Infer(InferSpec(model_uri=None, large_model=large_model))
  handlers = []

  class Visitor(beam.pipeline.PipelineVisitor):

    def enter_composite_transform(self, node):
      if isinstance(node.transform, RunInference):
        handlers.append(node.transform._model_handler)  # pylint: disable=protected-access

  p.visit(Visitor())
  assert len(handlers) == 1
  assert handlers[0]._threads == expected  # pylint: disable=protected-access


def test_a_window_restores_the_same_whatever_batch_it_lands_in():
  """The handler pads every model call to CALL_BATCH windows: a window's fill
  does not depend on how many other windows the runner batched with it (the
  CPU kernels round differently with a call's size; up to 2.4e-7 measured)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from transforms.records import Window  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(4)
  s = 256

  def window(i):
    mask = (rng.random((s, s, 1)) > 0.6).astype(np.float32)
    image = rng.random((s, s, 3), dtype=np.float32) * (1 - mask)
    context = rng.random((s, s, 3), dtype=np.float32)
    return Window(f"t{i}", 0, 0, image, mask, context=context)

  windows = [window(i) for i in range(11)]
  handler = native.NativeModelHandler(None)
  model = handler.load_model()
  alone = {w.tile_key: p.inference for w in windows[:3] for p in handler.run_inference([w], model)}
  for batch in (windows, windows[:2], windows[1:6], windows[2:9]):
    for p in handler.run_inference(batch, model):
      if p.example.tile_key in alone:
        np.testing.assert_array_equal(p.inference, alone[p.example.tile_key])

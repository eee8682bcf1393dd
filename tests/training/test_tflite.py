"""TFLite export: float16, dynamic-range and full-integer INT8 run in the interpreter."""

import numpy as np
import tensorflow as tf

from model_loader.contract import ALL_INPUTS, ModelCard
from tests.training.conftest import make_inputs
from training.export import export_tflite


def _run(path, inputs):
  it = tf.lite.Interpreter(model_path=path)
  runner = it.get_signature_runner("serving_default")
  return runner(**{k: inputs[k] for k in ALL_INPUTS})["restored"]


def test_fp16_and_int8(tmp_path, tiny_generator):
  card = ModelCard(name="tiny", version="test", bands=3, window=32, inputs=ALL_INPUTS, guided=True, context="push_pull")
  reps = [{k: v[i:i + 1] for k, v in make_inputs(3, 32, 3, seed=5).items()} for i in range(3)]
  paths = export_tflite(tiny_generator, card, str(tmp_path), reps)
  assert set(paths) == {"fp16", "dynamic", "int8"}
  inputs = make_inputs(1, 32, 3, seed=9)
  ref = tiny_generator({k: inputs[k] for k in ALL_INPUTS}).numpy()
  out16 = _run(paths["fp16"], inputs)
  assert out16.shape == ref.shape
  np.testing.assert_allclose(out16, ref, atol=2e-2)
  # Dynamic range: int8 weights, float activations.
  it = tf.lite.Interpreter(model_path=paths["dynamic"])
  weights = [d for d in it.get_tensor_details() if d["dtype"] == np.int8]
  assert weights, "no int8 weights"
  outd = _run(paths["dynamic"], inputs)
  assert outd.shape == ref.shape
  np.testing.assert_allclose(outd, ref, atol=2e-2)
  # Every op of the INT8 model is integer (float only at the edges).
  it = tf.lite.Interpreter(model_path=paths["int8"])
  ops = {d["op_name"] for d in it._get_ops_details()}
  assert "CONV_2D" in ops
  assert [d for d in it.get_tensor_details() if d["dtype"] == np.int8], "no int8 tensors"
  out8 = _run(paths["int8"], inputs)
  assert out8.shape == ref.shape and np.isfinite(out8).all()
  hole = inputs["mask"][..., 0] > 0
  err = np.abs(out8 - ref)[hole].mean()
  assert err < 0.1, err

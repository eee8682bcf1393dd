"""TFLite export: float16 and full-integer INT8 run in the interpreter."""

import numpy as np
import tensorflow as tf

from model_loader.contract import ModelCard
from training.export import export_tflite


def _run(path, image, mask):
  it = tf.lite.Interpreter(model_path=path)
  it.allocate_tensors()
  for d in it.get_input_details():
    it.set_tensor(d["index"], image if "image" in d["name"] else mask)
  it.invoke()
  return it.get_tensor(it.get_output_details()[0]["index"])


def test_fp16_and_int8(tmp_path, tiny_generator):
  card = ModelCard(name="tiny", version="test", bands=3, window=32)
  yy, xx = np.mgrid[0:32, 0:32] / 32.0

  def tile(k):
    img = np.stack([0.5 + 0.3 * np.sin(3 * yy + k + b) * np.cos(2 * xx)
                    for b in range(3)], -1)[None].astype(np.float32)
    m = np.zeros((1, 32, 32, 1), np.float32)
    m[:, 8 + k:20 + k, 6:22] = 1
    return img, m

  reps = [tile(k) for k in range(3)]
  paths = export_tflite(tiny_generator, card, str(tmp_path), reps)
  assert set(paths) == {"fp16", "int8"}
  image, mask = tile(1)
  ref = tiny_generator((image, mask)).numpy()
  out16 = _run(paths["fp16"], image, mask)
  assert out16.shape == ref.shape
  np.testing.assert_allclose(out16, ref, atol=2e-2)
  # Every op of the INT8 model is integer (float only at the edges).
  it = tf.lite.Interpreter(model_path=paths["int8"])
  ops = {d["op_name"] for d in it._get_ops_details()}
  assert "CONV_2D" in ops
  details = it.get_tensor_details()
  conv_w = [d for d in details if d["dtype"] == np.int8]
  assert conv_w, "no int8 tensors in the INT8 model"
  out8 = _run(paths["int8"], image, mask)
  assert out8.shape == ref.shape and np.isfinite(out8).all()
  hole = mask[..., 0] > 0
  err = np.abs(out8 - ref)[hole].mean()
  assert err < 0.1, err

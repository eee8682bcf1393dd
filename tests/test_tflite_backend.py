"""--backend tflite: the shipped model's dynamic-range TFLite file behind RunInference."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from model_loader import lite, locate, native
from pipeline import cli
from tests.conftest import SAMPLE
from tests.helpers import read_raster, read_summary
from transforms.records import Window

DEFAULT = locate.resolve(None)


def _fresh_python(code: str) -> tuple[str, str]:
  """Runs ``code`` in a new Python process at the repository root: (its last stdout line, its output for messages)."""
  out = subprocess.run([sys.executable, "-c", code],
                       capture_output=True,
                       text=True,
                       check=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  return out.stdout.strip().splitlines()[-1], out.stdout + out.stderr[-2000:]


def _windows(n, seed=4, s=256):
  rng = np.random.default_rng(seed)
  out = []
  for i in range(n):
    mask = (rng.random((s, s, 1)) > 0.6).astype(np.float32)
    image = rng.random((s, s, 3), dtype=np.float32) * (1 - mask)
    out.append(Window(f"t{i}", 0, 0, image, mask, context=rng.random((s, s, 3), dtype=np.float32)))
  return out


def test_the_shipped_tflite_model_matches_the_savedmodel():
  windows = _windows(3)
  small = lite.LiteModel(lite.tflite_path(DEFAULT))
  full = native.load(DEFAULT)
  assert small.declared_inputs() == full.input_names and small.window == 256
  args = (np.stack([w.image for w in windows]), np.stack([w.mask for w in windows]))
  context = np.stack([w.context for w in windows])
  got, want = small.restore(*args, context=context), full.restore(*args, context=context)
  hole = args[1][..., 0] > 0
  err = np.abs(got - want)[hole]
  assert got.shape == want.shape and err.max() < 0.02 and err.mean() < 2e-3, (err.max(), err.mean())
  assert np.abs(want - context)[hole].mean() > 5 * err.mean()  # the correction is there, not lost


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ai-edge-litert is a dependency on Linux only")
def test_litert_runs_the_file_as_tensorflow_does_without_importing_tensorflow():
  """LiteRT (the interpreter the backend prefers) against TensorFlow's on the same file; a fresh process runs it without TensorFlow."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=import-outside-toplevel
  assert lite.interpreter_class() is Interpreter
  windows = _windows(2, seed=9)
  feed = {
      "image": np.stack([w.image for w in windows]),
      "mask": np.stack([w.mask for w in windows]),
      "context": np.stack([w.context for w in windows])
  }
  got = lite.LiteModel(lite.tflite_path(DEFAULT), threads=1).restore(feed["image"],
                                                                     feed["mask"],
                                                                     context=feed["context"])
  runner = tf.lite.Interpreter(model_path=lite.tflite_path(DEFAULT), num_threads=1).get_signature_runner()
  zeros = {"guide": np.zeros_like(feed["image"][:1]), "guide_mask": np.ones_like(feed["mask"][:1])}
  for i in range(2):
    want = runner(**{k: v[i:i + 1] for k, v in feed.items()}, **zeros)["restored"]
    np.testing.assert_allclose(got[i:i + 1], want, atol=1e-5)
  # A process that loads and runs the model through the backend imports no TensorFlow.
  last, out = _fresh_python("import sys, numpy as np; from model_loader import lite, locate; "
                            "m = lite.LiteModel(lite.tflite_path(locate.resolve(None)), threads=1); "
                            "m.restore(np.zeros((1, 256, 256, 3), np.float32), np.ones((1, 256, 256, 1), np.float32)); "
                            "print('tensorflow' in sys.modules)")
  assert last == "False", out


def test_a_window_gives_the_same_fill_alone_and_in_a_batch():
  windows = _windows(5, seed=7)
  handler = lite.LiteModelHandler(None)
  model = handler.load_model()
  alone = [p.inference for w in windows[:2] for p in handler.run_inference([w], model)]
  batch = [p.inference for p in handler.run_inference(windows, model)]
  for a, b in zip(alone, batch):
    np.testing.assert_array_equal(a, b)


def test_a_model_without_its_tflite_file_is_refused_before_any_work(tmp_path, capsys):
  model = tmp_path / "model"
  shutil.copytree(DEFAULT, model)
  os.remove(lite.tflite_path(str(model)))
  out = tmp_path / "out"
  code = cli.main([
      "run", "--images",
      os.path.join(SAMPLE, "images", "*.tif"), "--masks",
      os.path.join(SAMPLE, "masks", "{stem}.png"), "--output",
      str(out), "--model",
      str(model), "--backend", "tflite", "--no-report"
  ])
  err = capsys.readouterr().err
  assert code == 2 and "--tflite-asset" in err and "Traceback" not in err
  assert not glob.glob(str(out / "restored" / "*"))


@pytest.mark.slow
def test_the_sample_through_the_tflite_backend(tmp_path):
  out = tmp_path / "out"
  assert cli.main([
      "run", "--images",
      os.path.join(SAMPLE, "images", "*.tif"), "--masks",
      os.path.join(SAMPLE, "masks", "{stem}.png"), "--output",
      str(out), "--backend", "tflite", "--config", "landsat8_l1", "--evaluate", "--no-report"
  ]) == 0
  n = len(glob.glob(os.path.join(SAMPLE, "images", "*.tif")))
  assert read_summary(str(out))["counts"] == {"restored": n, "skipped": 0, "failed": 0}
  for path in glob.glob(os.path.join(SAMPLE, "images", "*.tif")):
    stem = os.path.splitext(os.path.basename(path))[0]
    src, _ = read_raster(path)
    got, _ = read_raster(str(out / "restored" / f"{stem}.tif"))
    mask = np.asarray(Image.open(os.path.join(SAMPLE, "masks", stem + ".png"))) > 0
    mask = ndimage.binary_dilation(mask, np.ones((3, 3), bool), iterations=2)  # the config dilates by 2
    np.testing.assert_array_equal(got[~mask], src[~mask])
    assert not np.array_equal(got[mask], src[mask])


def test_tflite_with_an_accelerator_is_a_usage_error(tmp_path, capsys):
  code = cli.main([
      "run", "--images",
      os.path.join(SAMPLE, "images", "*.tif"), "--masks",
      os.path.join(SAMPLE, "masks", "{stem}.png"), "--output",
      str(tmp_path / "out"), "--backend", "tflite", "--accelerator", "type:nvidia-l4;count:1", "--no-report"
  ])
  err = capsys.readouterr().err
  assert code == 2 and "runs on the CPU" in err and "Traceback" not in err


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ai-edge-litert is a dependency on Linux only")
def test_a_tflite_run_never_imports_tensorflow(tmp_path):
  """`cloudfill run --backend tflite` on the sample, in a fresh process: launch check, inference, outputs, no TensorFlow."""
  last, out = _fresh_python("import sys; from pipeline import cli; "
                            f"rc = cli.main(['run', '--images', {os.path.join(SAMPLE, 'images', '*.tif')!r}, "
                            f"'--masks', {os.path.join(SAMPLE, 'masks', '{stem}.png')!r}, "
                            f"'--output', {str(tmp_path / 'out')!r}, '--backend', 'tflite', '--no-report', "
                            "'--quiet']); print('rc', rc, 'tensorflow' in sys.modules)")
  assert last == "rc 0 False", out
  assert "XNNPACK delegate" not in out  # LiteRT's INFO line is start-up noise (pipeline.progress).
  n = len(glob.glob(os.path.join(SAMPLE, "images", "*.tif")))
  assert read_summary(str(tmp_path / "out"))["counts"] == {"restored": n, "skipped": 0, "failed": 0}

"""Training under the JAX backend: the steps learn, the command runs, and
JAX-trained weights give the same outputs in the TensorFlow-backend model."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from model_loader.contract import ALL_INPUTS

pytestmark = pytest.mark.slow  # JAX compiles in subprocesses: a minute a test

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _jax(code: str, tmp_path, timeout=600) -> str:
  """Runs ``code`` in a fresh interpreter under the JAX backend."""
  pytest.importorskip("jax")
  env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
  r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                     cwd=str(tmp_path),
                     env=env,
                     capture_output=True,
                     text=True,
                     timeout=timeout)
  assert r.returncode == 0, r.stderr[-3000:]
  return r.stdout


def test_jax_steps_reduce_l1(tmp_path):
  out = _jax(
      """
    import numpy as np
    from tests.training.conftest import make_inputs
    from training.generator import build_generator
    from training.trainer import Trainer, TrainSpec
    gen = build_generator(3, 64, stem=8, widths=(8, 16, 16, 16))
    t = Trainer(gen, None, TrainSpec(lr=2e-3))
    batch = make_inputs(4, 64, 3, guided=False)
    state = t.init_state()
    losses = []
    for _ in range(30):
      state, logs = t.train_step(state, batch)
      losses.append(float(logs["l1_hole"]))
    print(losses[0], np.mean(losses[-5:]))
  """, tmp_path)
  first, last = map(float, out.split())
  assert np.isfinite([first, last]).all()
  assert last < 0.9 * first, (first, last)


def test_mse_steps_learn_and_ema_averages(tmp_path):
  """--loss mse lowers the hole MSE; --ema keeps d * previous + (1 - d) *
  trained weights, and that average is what is validated."""
  out = _jax(
      """
    import numpy as np
    from tests.training.conftest import make_inputs
    from training.generator import build_generator
    from training.trainer import Trainer, TrainSpec
    gen = build_generator(3, 64, stem=8, widths=(8, 16, 16, 16))
    t = Trainer(gen, None, TrainSpec(lr=2e-3, loss="mse", ema=0.5, clipnorm=1.0))
    batch = make_inputs(4, 64, 3, guided=False)
    state = t.init_state()
    init = [np.array(v) for v in state["g_ema"]]
    state, logs = t.train_step(state, batch)
    gap = max(float(np.abs(np.array(e) - (0.5 * a + 0.5 * np.array(w))).max())
              for e, a, w in zip(state["g_ema"], init, state["g_tv"]))
    moved = max(float(np.abs(np.array(e) - a).max()) for e, a in zip(state["g_ema"], init))
    losses = [float(logs["mse_hole"])]
    for _ in range(30):
      state, logs = t.train_step(state, batch)
      losses.append(float(logs["mse_hole"]))
    ema_out = t.predict(state, batch)
    t.write_back(state)
    same = float(np.abs(np.asarray(gen({k: batch[k] for k in ("image", "mask", "context", "guide", "guide_mask")}))
                        - ema_out).max())
    raw = dict(state)
    raw.pop("g_ema")
    differs = float(np.abs(t.predict(raw, batch) - ema_out).max())
    print(gap, moved, losses[0], np.mean(losses[-5:]), same, differs)
  """, tmp_path)
  gap, moved, first, last, same, differs = map(float, out.split())
  assert gap < 1e-6 and moved > 0
  assert last < 0.9 * first, (first, last)
  assert same < 1e-5 and differs > 1e-6  # validated and saved: the average, not the raw weights


def test_gan_step_updates_discriminator(tmp_path):
  out = _jax(
      """
    import numpy as np
    from tests.training.conftest import make_inputs
    from training.discriminator import MultiScaleDiscriminator
    from training.generator import build_generator
    from training.trainer import Trainer, TrainSpec
    gen = build_generator(3, 64, stem=8, widths=(8, 16, 16, 16))
    disc = MultiScaleDiscriminator(channels=(8, 16, 16))
    disc((np.zeros((1, 64, 64, 3), np.float32), np.zeros((1, 64, 64, 1), np.float32)))
    t = Trainer(gen, disc, TrainSpec(gan="hinge"))
    state = t.init_state()
    before = [np.array(v) for v in state["d_tv"]]
    state, logs = t.train_step(state, make_inputs(2, 64, 3), adversarial=True)
    moved = sum(float(np.abs(np.array(a) - b).sum()) for a, b in zip(state["d_tv"], before))
    print(moved, float(logs["d_loss"]), float(logs["g_adv"]), float(logs["fm"]))
  """, tmp_path)
  moved, d_loss, g_adv, fm = map(float, out.split())
  assert moved > 0 and np.isfinite([d_loss, g_adv, fm]).all()


@pytest.mark.parametrize("attention", [False, True])
def test_jax_weights_load_into_tensorflow_model(tmp_path, attention):
  """One model definition, two backends: weights saved under JAX reproduce
  the JAX outputs under TensorFlow within 1e-4 (with contextual attention too)."""
  _jax(
      """
    import numpy as np
    from tests.training.conftest import make_inputs
    from training.generator import build_generator
    from training.trainer import Trainer, TrainSpec
    gen = build_generator(3, 64, stem=8, widths=(8, 16, 16, 16), attention=%r)
    t = Trainer(gen, None, TrainSpec(lr=2e-3))
    state = t.init_state()
    batch = make_inputs(2, 64, 3, seed=3)
    for _ in range(5):   # move the zero-initialised last layer off zero
      state, _ = t.train_step(state, batch)
    t.write_back(state)
    gen.save_weights("g.weights.h5")
    fixed = make_inputs(2, 48, 3, seed=11)
    np.save("out.npy", np.asarray(gen({k: fixed[k] for k in %r})))
  """ % (attention, ALL_INPUTS), tmp_path)
  import keras
  assert keras.backend.backend() == "tensorflow"
  from tests.training.conftest import make_inputs
  from training.generator import build_generator
  gen = build_generator(3, 64, stem=8, widths=(8, 16, 16, 16), attention=attention)
  gen.load_weights(str(tmp_path / "g.weights.h5"))
  if attention:  # trained: the attention's output projection moved off its zero start
    assert np.abs(gen.get_layer("attention").get_weights()[3]).max() > 0
  fixed = make_inputs(2, 48, 3, seed=11)
  got = gen({k: fixed[k] for k in ALL_INPUTS}).numpy()
  want = np.load(tmp_path / "out.npy")
  assert np.abs(want - fixed["context"]).max() > 1e-3  # trained: not the bare context
  np.testing.assert_allclose(got, want, atol=1e-4)


def test_train_variants_share_batches_and_export(tmp_path, data_dir):
  """``--variant``: two models trained together, one folder each, each exportable."""
  from training.bundle import pack
  bundle = str(tmp_path / "b.npz")
  pack(data_dir, bundle, [os.path.join(data_dir, "aerial_5m", "rgbn.tif")])
  out = tmp_path / "sweep"
  env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
  r = subprocess.run([
      sys.executable, "-m", "training.train", "--data", bundle, "--out",
      str(out), "--steps", "2", "--batch", "2", "--crop", "64", "--val-size", "64", "--val-tiles", "2", "--workers",
      "0", "--stem", "8", "--widths", "8,16,16,16", "--crops-per-region", "4", "--variant",
      "m:loss=mse,ema=0.9,lr=1e-4,attention=1", "--variant", "s:widths=8/8/8/8,stem=4"
  ],
                     env=env,
                     capture_output=True,
                     text=True,
                     timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  m = json.loads((out / "m" / "metrics.json").read_text())
  s = json.loads((out / "s" / "metrics.json").read_text())
  assert m["steps"] == s["steps"] == 2 and m["models_trained_together"] == 2
  assert (m["spec"]["loss"], m["spec"]["ema"], m["spec"]["lr"]) == ("mse", 0.9, 1e-4)
  assert s["spec"]["loss"] == "l1" and s["params"] < m["params"]
  assert m["init_weights"] is None  # started from scratch
  assert json.loads((out / "s" / "generator.json").read_text())["widths"] == [8, 8, 8, 8]
  assert json.loads((out / "m" / "generator.json").read_text())["attention"] is True  # trained under JAX
  from training.export import main as export_main
  assert export_main(["--run", str(out / "s"), "--out", str(tmp_path / "model"), "--tflite-asset"]) == 0
  from model_loader.lite import LiteModel, tflite_path
  assert LiteModel(tflite_path(str(tmp_path / "model"))).window == 256  # the card's window, for --backend tflite


def test_init_weights_record_names_the_file_and_its_hash(tmp_path):
  """A continued run's metrics.json says which weights it started from."""
  import hashlib
  from training.fit import init_weights_record
  path = tmp_path / "start.weights.h5"
  path.write_bytes(b"weights of the previous model")
  assert init_weights_record(str(path)) == {
      "file": "start.weights.h5",
      "sha256": hashlib.sha256(b"weights of the previous model").hexdigest()
  }
  assert init_weights_record(None) is None and init_weights_record("") is None


def test_train_cli_runs_and_exports(tmp_path, data_dir):
  """``cloudfill train`` (JAX) on a bundle, then ``cloudfill export`` (TF)."""
  from training.bundle import pack
  files = [os.path.join(data_dir, "aerial_5m", "rgbn.tif"), os.path.join(data_dir, "rmnp", "rmnp-rgb.tif")]
  bundle = str(tmp_path / "b.npz")
  info = pack(data_dir, bundle, files)
  assert info["files"] == ["aerial_5m/rgbn.tif", "rmnp/rmnp-rgb.tif"]
  out = tmp_path / "run"
  env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
  r = subprocess.run([
      sys.executable, "-m", "training.train", "--data", bundle, "--out",
      str(out), "--steps", "3", "--batch", "2", "--crop", "64", "--val-size", "64", "--val-tiles", "2", "--workers",
      "0", "--stem", "8", "--widths", "8,16,16,16", "--gan", "hinge", "--log-every", "1"
  ],
                     env=env,
                     capture_output=True,
                     text=True,
                     timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  metrics = json.loads((out / "metrics.json").read_text())
  assert metrics["steps"] == 3 and np.isfinite(metrics["best"]["unguided_hole_psnr_db"])
  assert json.loads((out / "trained_on.json").read_text()) == info["files"]
  assert (out / "generator.weights.h5").exists() and os.listdir(out / "tb")
  from training.export import main as export_main
  model = tmp_path / "model"
  assert export_main(["--run", str(out), "--out", str(model)]) == 0
  card = json.loads((model / "assets" / "cloudfill.json").read_text())
  assert card["trained_on"] == info["files"] and card["version"] == "w" + card["weights_sha256"][:12]
  assert card["inputs"] == list(ALL_INPUTS)

"""A tiny training run: the step runs and reduces the loss."""

import glob
import json
import os

import keras
import numpy as np
import tensorflow as tf

from training import losses as L


def test_few_steps_reduce_l1(tiny_generator):
  gen = tiny_generator.__class__.from_config(tiny_generator.get_config())
  rng = np.random.default_rng(0)
  yy, xx = np.mgrid[0:64, 0:64] / 64.0
  x = np.stack([np.sin(3 * yy + k) * np.cos(2 * xx - k) * 0.3 + 0.5
                + 0.01 * rng.standard_normal((64, 64)) for k in range(3)], -1)
  x = np.repeat(x[None].astype(np.float32), 4, 0)
  m = np.zeros((4, 64, 64, 1), np.float32)
  m[:, 16:48, 20:44] = 1
  opt = keras.optimizers.Adam(2e-3)

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      out = gen((x, m), training=True)
      loss, _, _ = L.l1_hole_valid(x, out, m)
    opt.apply_gradients(zip(tape.gradient(loss, gen.trainable_variables),
                            gen.trainable_variables))
    return loss

  losses = [float(step()) for _ in range(25)]
  assert np.isfinite(losses).all()
  assert np.mean(losses[-5:]) < 0.95 * losses[0]


def test_train_cli_runs(tmp_path, data_dir):
  from training.train import main
  out = tmp_path / "run"
  rc = main(["--data", os.path.join(data_dir, "aerial_5m", "*.tif"),
             "--cloud-masks", os.path.join(data_dir, "cloud_masks"),
             "--out", str(out), "--steps", "2", "--batch", "2",
             "--crop", "64", "--val-size", "64", "--val-tiles", "2",
             "--val-every", "2", "--encoder", "8,8,16,16,16",
             "--decoder", "16,16,8,8", "--no-progress", "--gan", "hinge",
             "--warmup-steps", "0", "--log-every", "1"])
  assert rc == 0
  metrics = json.loads((out / "metrics.json").read_text())
  assert metrics["steps"] == 2 and np.isfinite(metrics["val_hole_psnr_db"])
  assert (out / "generator.weights.h5").exists()
  assert glob.glob(str(out / "tb" / "*"))
  # --resume continues from the checkpoint.
  rc = main(["--data", os.path.join(data_dir, "aerial_5m", "*.tif"),
             "--out", str(out), "--steps", "3", "--batch", "2",
             "--crop", "64", "--val-size", "64", "--val-tiles", "2",
             "--encoder", "8,8,16,16,16", "--decoder", "16,16,8,8",
             "--no-progress", "--resume"])
  assert rc == 0
  assert json.loads((out / "metrics.json").read_text())["steps"] == 3

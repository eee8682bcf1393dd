"""Contextual attention over known ground: numpy reference, identity start, loading and export."""

import json

import numpy as np
import pytest

from tests.training.conftest import make_inputs
from training import attention
from training.generator import build_generator, load_weights
from training.train import parse_variant

NAMES = ("image", "mask", "context", "guide", "guide_mask")
TINY = dict(stem=8, widths=(8, 16, 16, 16))


def _trained_layer(rng, channels=12, key_dim=8):
  layer = attention.KnownAttention(key_dim=key_dim)
  f = rng.standard_normal((2, 5, 6, channels)).astype(np.float32)
  layer((f, np.ones((2, 5, 6, 1), np.float32)))
  layer.wo.assign(0.3 * rng.standard_normal((channels, channels)).astype(np.float32))
  return layer, f


def test_matches_numpy_reference_with_and_without_known_ground():
  rng = np.random.default_rng(0)
  layer, f = _trained_layer(rng)
  known = rng.random((2, 5, 6, 1)).astype(np.float32)
  known[0, :, :3] = 0  # half the cells over cloud
  known[1] = 0  # nothing known: every cell weighs the same, no NaN
  got = np.asarray(layer((f, known)))
  want = attention.reference(f, known, *[np.asarray(w) for w in (layer.wq, layer.wk, layer.wv, layer.wo)])
  assert np.isfinite(got).all()
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  assert np.abs(got - f).max() > 0.1  # the trained output projection changes the features


def test_reads_known_cells_only():
  """With one cell known, every cell reads (almost only) that cell's value."""
  rng = np.random.default_rng(1)
  layer, f = _trained_layer(rng)
  known = np.zeros((2, 5, 6, 1), np.float32)
  known[:, 2, 4] = 1.0
  got = np.asarray(layer((f, known))) - f
  wv, wo = np.asarray(layer.wv), np.asarray(layer.wo)
  only = (f[:, 2, 4] @ wv) @ wo  # [2, C]: what reading that one cell alone adds
  # Each other cell weighs at most eps * e^20 (5e-4) of it.
  np.testing.assert_allclose(got, np.broadcast_to(only[:, None, None], got.shape), atol=0.02 * np.abs(only).max())


def test_new_layer_starts_as_the_identity():
  layer = attention.KnownAttention()
  f = np.random.default_rng(2).standard_normal((1, 4, 4, 16)).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(layer((f, np.full((1, 4, 4, 1), 0.5, np.float32)))), f)


def test_generator_with_attention_takes_plain_weights_unchanged(tmp_path):
  """--init-weights of a model without attention: same outputs, the new layer trainable."""
  plain = build_generator(3, 64, **TINY)
  plain.get_layer("out").set_weights([0.1 * w + 0.01 for w in plain.get_layer("out").get_weights()])
  path = str(tmp_path / "plain.weights.h5")
  plain.save_weights(path)
  gen = build_generator(3, 64, attention=True, **TINY)
  load_weights(gen, path)
  batch = make_inputs(2, 64, 3, seed=4)
  want = np.asarray(plain({k: batch[k] for k in NAMES}))
  assert np.abs(want - batch["context"]).max() > 1e-3  # not the bare context
  np.testing.assert_array_equal(np.asarray(gen({k: batch[k] for k in NAMES})), want)
  assert gen.count_params() > plain.count_params()
  assert gen.get_config()["attention"] is True and "attention" not in plain.get_config()


def test_plain_generator_refuses_attention_weights(tmp_path):
  gen = build_generator(3, 64, attention=True, **TINY)
  path = str(tmp_path / "attn.weights.h5")
  gen.save_weights(path)
  with pytest.raises(ValueError):
    load_weights(build_generator(3, 64, **TINY), path)


def test_variant_key():
  assert parse_variant("a:attention=1,lr=1e-4") == ("a", {"attention": True, "lr": 1e-4})
  assert parse_variant("b:attention=false") == ("b", {"attention": False})
  with pytest.raises(ValueError, match="attention"):
    parse_variant("c:attention=maybe")


@pytest.mark.slow
def test_exports_and_runs_as_tflite(tmp_path):
  """A generator with attention exports to the SavedModel contract and TFLite, same outputs."""
  from model_loader.lite import LiteModel, tflite_path
  from model_loader.native import LoadedModel
  from training.export import main as export_main
  gen = build_generator(3, 64, attention=True, **TINY)
  rng = np.random.default_rng(5)
  for layer in (gen.get_layer("attention"), gen.get_layer("out")):
    layer.set_weights([0.05 * rng.standard_normal(w.shape).astype(np.float32) for w in layer.get_weights()])
  run = tmp_path / "run"
  run.mkdir()
  gen.save_weights(str(run / "generator.weights.h5"))
  (run / "generator.json").write_text(json.dumps(gen.get_config()))
  assert export_main(
      ["--run",
       str(run), "--out",
       str(tmp_path / "model"), "--window", "64", "--overlap", "8", "--tflite-asset"]) == 0
  batch = make_inputs(1, 64, 3, seed=6)
  want = np.asarray(gen({k: batch[k] for k in NAMES}))
  assert np.abs(want - batch["context"]).max() > 1e-3
  extra = {k: batch[k] for k in NAMES[2:]}
  saved = LoadedModel(str(tmp_path / "model"))
  np.testing.assert_allclose(saved(batch["image"], batch["mask"], **extra), want, atol=1e-4)
  lite = LiteModel(tflite_path(str(tmp_path / "model")))
  assert np.abs(lite(batch["image"], batch["mask"], **extra) - want).mean() < 2e-3

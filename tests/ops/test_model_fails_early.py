"""A model that cannot serve fails ``cloudfill run`` at launch: exit 2, no tile written.

``pipeline.run.check_model_early`` loads the model once and runs one window
through it before the pipeline starts, so a broken model costs seconds, not
a cluster's worth of failing workers.
"""

from __future__ import annotations

import os
import shutil

import pytest

from model_loader.contract import ASSET_NAME, OUTPUT_RESTORED, SIGNATURE_RESTORE, ModelCard
from pipeline.summary import EXIT_USAGE
from tests.model_fixture import make_mean_fill_model
from tests.ops.opslib import cloudfill, copy_sample, tree


def _card(path: str, **kw) -> None:
  os.makedirs(os.path.join(path, "assets"), exist_ok=True)
  card = ModelCard(name="broken", version="x", bands=3, window=64, overlap=8, **kw)
  with open(os.path.join(path, "assets", ASSET_NAME), "w", encoding="utf-8") as f:
    f.write(card.to_json())


def unloadable(path: str) -> str:
  """A cloudfill card beside a ``saved_model.pb`` that is not a SavedModel."""
  _card(path)
  with open(os.path.join(path, "saved_model.pb"), "wb") as f:
    f.write(b"\x08\x01 this is not a protobuf of a SavedModel \xff\xfe")
  return path


def wrong_shape(path: str) -> str:
  """A SavedModel whose ``restore`` returns half-size windows."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  class Half(tf.Module):

    @tf.function(input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.float32),
        tf.TensorSpec([None, None, None, 1], tf.float32)
    ])
    def restore(self, image, mask):
      del mask
      return {OUTPUT_RESTORED: image[:, ::2, ::2, :]}

  module = Half()
  tf.saved_model.save(module, path, signatures={SIGNATURE_RESTORE: module.restore.get_concrete_function()})
  _card(path)
  return path


def nan_output(path: str) -> str:
  """The mean-fill model with its output multiplied by NaN."""
  return make_mean_fill_model(path, window=64, overlap=8, scale=float("nan"))


def no_restore_signature(path: str) -> str:
  """A SavedModel with only ``serving_default``: not the cloudfill contract."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  class Other(tf.Module):

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def serve(self, x):
      return {"y": x}

  module = Other()
  tf.saved_model.save(module, path, signatures={"serving_default": module.serve.get_concrete_function()})
  _card(path)
  return path


CASES = {  # name -> (builder, phrase of the message on stderr)
    "unloadable": (unloadable, "failed to load"),
    "wrong_shape": (wrong_shape, "returned shape (1, 32, 32, 3) for input (1, 64, 64, 3)"),
    "nan_output": (nan_output, "non-finite values"),
    "no_restore_signature": (no_restore_signature, "has no 'restore' signature"),
    "missing": (None, "no SavedModel at"),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
  return copy_sample(str(tmp_path_factory.mktemp("early-in")), n=2)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_model_exits_2_before_any_tile_is_written(case, inputs, tmp_path, capsys):
  builder, phrase = CASES[case]
  model = str(tmp_path / "model")
  if builder is not None:
    builder(model)
  out = str(tmp_path / "out")
  images, masks = inputs

  status = cloudfill("--images", images, "--masks", masks, "--output", out, "--model", model, "--config", "landsat8_l1")

  assert status == EXIT_USAGE
  err = capsys.readouterr().err
  assert "cloudfill run:" in err and phrase in err, err
  assert not os.path.exists(out) or tree(out) == [], tree(out)  # Not one file written.
  shutil.rmtree(model, ignore_errors=True)

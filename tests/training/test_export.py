"""The exported SavedModel honours model_loader/contract.py."""

import os

import numpy as np
import pytest
import tensorflow as tf

from model_loader import contract
from model_loader.contract import ModelCard
from tests.training.conftest import make_inputs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INPUTS = contract.ALL_INPUTS


def _feature(values):
  return tf.train.Feature(float_list=tf.train.FloatList(value=np.ravel(values)))


def _example(inputs, i, keys=INPUTS):
  return tf.train.Example(features=tf.train.Features(
      feature={k: _feature(inputs[k][i]) for k in keys})).SerializeToString()


def _restore(m, inputs):
  return m.signatures[contract.SIGNATURE_RESTORE](**{
      k: tf.constant(inputs[k]) for k in INPUTS
  })[contract.OUTPUT_RESTORED].numpy()


def test_both_signatures(exported, tiny_card, tiny_generator):
  m = tf.saved_model.load(exported)
  assert {contract.SIGNATURE_RESTORE, contract.SIGNATURE_SERVING} <= set(m.signatures)
  w, c = tiny_card.window, tiny_card.bands
  inputs = make_inputs(2, w, c)
  restored = _restore(m, inputs)
  assert restored.shape == inputs["image"].shape and restored.dtype == np.float32
  np.testing.assert_allclose(restored, tiny_generator({k: inputs[k] for k in INPUTS}).numpy(), atol=1e-5)
  serialized = tf.constant([_example(inputs, i) for i in range(2)])
  out2 = m.signatures[contract.SIGNATURE_SERVING](examples=serialized)
  np.testing.assert_allclose(out2[contract.OUTPUT_RESTORED].numpy(), restored, atol=1e-5)
  # Any size: the model pads internally.
  odd = {k: v[:1, :37, :50] for k, v in inputs.items()}
  assert _restore(m, odd).shape == (1, 37, 50, c)


def test_serving_default_without_guide_features(exported, tiny_card):
  """guide and guide_mask are optional features: left out = no guide."""
  m = tf.saved_model.load(exported)
  inputs = make_inputs(2, tiny_card.window, tiny_card.bands, guided=False)
  want = _restore(m, inputs)
  serialized = tf.constant([_example(inputs, i, INPUTS[:3]) for i in range(2)])
  got = m.signatures[contract.SIGNATURE_SERVING](examples=serialized)[contract.OUTPUT_RESTORED]
  np.testing.assert_allclose(got.numpy(), want, atol=1e-5)


def test_untrained_generator_returns_its_context(tiny_card):
  """The last layer starts at zero: an untrained model returns the context
  (a classical fill), never noise or a constant."""
  from training.generator import build_generator
  g = build_generator(3, 64)
  inputs = make_inputs(2, 64, 3)
  out = g({k: inputs[k] for k in INPUTS}).numpy()
  np.testing.assert_allclose(out, inputs["context"], atol=1e-4)


def test_every_weight_is_stored_once(exported, tiny_generator):
  """The checkpoint holds the generator's parameters once (keras-team/keras#23553:
  ExportArchive.track() stored every weight twice)."""
  stored = tf.train.list_variables(os.path.join(exported, "variables", "variables"))
  n = sum(int(np.prod(shape)) for name, shape in stored if name != "_CHECKPOINTABLE_OBJECT_GRAPH")
  assert n == tiny_generator.count_params()


def test_the_shipped_model_stores_every_weight_once():
  from model_loader.locate import read_card
  path = os.path.join(ROOT, "model_loader", "default_model")
  stored = tf.train.list_variables(os.path.join(path, "variables", "variables"))
  n = sum(int(np.prod(shape)) for name, shape in stored if name != "_CHECKPOINTABLE_OBJECT_GRAPH")
  assert n == read_card(path).metrics["params"] == 2065635


def test_card_asset(exported, tiny_card):
  with open(os.path.join(exported, "assets", contract.ASSET_NAME)) as f:
    card = ModelCard.from_json(f.read())
  assert card.to_json() == tiny_card.to_json()
  assert card.takes_context and card.guided


def test_tfx_bsl_run_inference(exported, tiny_card):
  beam = pytest.importorskip("apache_beam")
  pytest.importorskip("tfx_bsl")
  from apache_beam.ml.inference.base import RunInference
  from apache_beam.testing.test_pipeline import TestPipeline
  from apache_beam.testing.util import assert_that
  from tfx_bsl.public.beam.run_inference import CreateModelHandler
  from tfx_bsl.public.proto import model_spec_pb2

  spec = model_spec_pb2.InferenceSpecType(
      saved_model_spec=model_spec_pb2.SavedModelSpec(model_path=exported, signature_name=[contract.SIGNATURE_SERVING]))
  inputs = make_inputs(3, tiny_card.window, tiny_card.bands, seed=1)
  expected = _restore(tf.saved_model.load(exported), inputs)

  def to_array(log):
    return tf.make_ndarray(log.predict_log.response.outputs[contract.OUTPUT_RESTORED])

  def check(arrays):
    assert len(arrays) == 3
    got = sorted(arrays, key=lambda a: float(a.sum()))
    want = sorted(expected, key=lambda a: float(a.sum()))
    for g, e in zip(got, want):
      np.testing.assert_allclose(g.reshape(e.shape), e, atol=1e-4)

  with TestPipeline() as p:
    out = (p | beam.Create([_example(inputs, i) for i in range(3)]) | RunInference(CreateModelHandler(spec)) |
           beam.Map(to_array))
    assert_that(out, check)


def test_export_refuses_to_overwrite(tmp_path):
  from training.export import main
  out = tmp_path / "m"
  out.mkdir()
  (out / "keep.txt").write_text("mine")
  assert main(["--untrained", "--out", str(out)]) == 2
  assert os.listdir(out) == ["keep.txt"]


def test_shipped_default_model():
  path = os.path.join(ROOT, "model_loader", "default_model")
  if not os.path.isdir(path):
    pytest.skip("no shipped default model")
  m = tf.saved_model.load(path)
  with open(os.path.join(path, "assets", contract.ASSET_NAME)) as f:
    card = ModelCard.from_json(f.read())
  inputs = make_inputs(1, card.window, card.bands)
  fn = m.signatures[contract.SIGNATURE_RESTORE]
  out = fn(**{k: tf.constant(inputs[k]) for k in card.inputs})[contract.OUTPUT_RESTORED].numpy()
  assert out.shape == inputs["image"].shape and np.isfinite(out).all()
  hole = inputs["mask"][..., 0] > 0
  # Inside the hole the model stays near the smooth truth (a sanity bound).
  assert np.abs(out[hole] - inputs["target"][hole]).mean() < 0.1

"""The exported SavedModel honours model_loader/contract.py."""

import os

import numpy as np
import pytest
import tensorflow as tf

from model_loader import contract
from model_loader.contract import ModelCard

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _inputs(n, w, c, seed=0):
  rng = np.random.default_rng(seed)
  image = rng.random((n, w, w, c), dtype=np.float32)
  mask = np.zeros((n, w, w, 1), np.float32)
  mask[:, w // 4:w // 2, w // 3:w // 2 + 5] = 1
  return image, mask


def _example(image, mask):
  f = tf.train.Feature
  return tf.train.Example(features=tf.train.Features(feature={
      "image": f(float_list=tf.train.FloatList(value=image.ravel())),
      "mask": f(float_list=tf.train.FloatList(value=mask.ravel())),
  })).SerializeToString()


def test_both_signatures(exported, tiny_card, tiny_generator):
  m = tf.saved_model.load(exported)
  assert {contract.SIGNATURE_RESTORE, contract.SIGNATURE_SERVING} <= set(
      m.signatures)
  w, c = tiny_card.window, tiny_card.bands
  image, mask = _inputs(2, w, c)
  out = m.signatures[contract.SIGNATURE_RESTORE](
      image=tf.constant(image), mask=tf.constant(mask))
  restored = out[contract.OUTPUT_RESTORED].numpy()
  assert restored.shape == image.shape and restored.dtype == np.float32
  np.testing.assert_allclose(
      restored, tiny_generator((image, mask)).numpy(), atol=1e-5)
  serialized = tf.constant([_example(image[i], mask[i]) for i in range(2)])
  out2 = m.signatures[contract.SIGNATURE_SERVING](examples=serialized)
  np.testing.assert_allclose(out2[contract.OUTPUT_RESTORED].numpy(),
                             restored, atol=1e-5)
  # Any size: the model pads internally.
  odd = m.signatures[contract.SIGNATURE_RESTORE](
      image=tf.constant(image[:1, :37, :50]), mask=tf.constant(mask[:1, :37, :50]))
  assert odd[contract.OUTPUT_RESTORED].shape == (1, 37, 50, c)


def test_card_asset(exported, tiny_card):
  with open(os.path.join(exported, "assets", contract.ASSET_NAME)) as f:
    assert ModelCard.from_json(f.read()).to_json() == tiny_card.to_json()


def test_tfx_bsl_run_inference(exported, tiny_card):
  beam = pytest.importorskip("apache_beam")
  pytest.importorskip("tfx_bsl")
  from apache_beam.ml.inference.base import RunInference
  from apache_beam.testing.test_pipeline import TestPipeline
  from apache_beam.testing.util import assert_that
  from tfx_bsl.public.beam.run_inference import CreateModelHandler
  from tfx_bsl.public.proto import model_spec_pb2

  spec = model_spec_pb2.InferenceSpecType(
      saved_model_spec=model_spec_pb2.SavedModelSpec(
          model_path=exported,
          signature_name=[contract.SIGNATURE_SERVING]))
  w, c = tiny_card.window, tiny_card.bands
  image, mask = _inputs(3, w, c, seed=1)
  expected = tf.saved_model.load(exported).signatures[
      contract.SIGNATURE_RESTORE](image=tf.constant(image),
                                  mask=tf.constant(mask))[
                                      contract.OUTPUT_RESTORED].numpy()

  def to_array(log):
    t = log.predict_log.response.outputs[contract.OUTPUT_RESTORED]
    return tf.make_ndarray(t)

  def check(arrays):
    assert len(arrays) == 3
    got = sorted(arrays, key=lambda a: float(a.sum()))
    want = sorted(expected, key=lambda a: float(a.sum()))
    for g, e in zip(got, want):
      np.testing.assert_allclose(g.reshape(e.shape), e, atol=1e-4)

  with TestPipeline() as p:
    out = (p
           | beam.Create([_example(image[i], mask[i]) for i in range(3)])
           | RunInference(CreateModelHandler(spec))
           | beam.Map(to_array))
    assert_that(out, check)


def test_shipped_default_model():
  path = os.path.join(ROOT, "model_loader", "default_model")
  if not os.path.isdir(path):
    pytest.skip("no shipped default model")
  m = tf.saved_model.load(path)
  with open(os.path.join(path, "assets", contract.ASSET_NAME)) as f:
    card = ModelCard.from_json(f.read())
  image, mask = _inputs(1, card.window, card.bands)
  out = m.signatures[contract.SIGNATURE_RESTORE](
      image=tf.constant(image), mask=tf.constant(mask))[
          contract.OUTPUT_RESTORED].numpy()
  assert out.shape == image.shape and np.isfinite(out).all()
  known = mask[..., 0] == 0
  # Known pixels come back close (the pipeline composites them anyway).
  assert np.abs(out[0][known[0]] - image[0][known[0]]).mean() < 0.05

"""A tiny SavedModel that honours the cloudfill contract, for tests.

It fills each missing pixel with the mean of the window's known pixels per
band: cheap, deterministic, and it exercises every signature the pipeline
uses. The trained generator's own tests live in tests/training/.
"""

from __future__ import annotations

import os
import tempfile
from typing import Optional

from model_loader.contract import (ASSET_NAME, EXAMPLE_FEATURES, OUTPUT_RESTORED, SIGNATURE_RESTORE, SIGNATURE_SERVING,
                                   ModelCard)


def make_mean_fill_model(path: str,
                         *,
                         bands: int = 3,
                         window: int = 64,
                         overlap: int = 8,
                         version: str = "test-mean-1",
                         scale: float = 1.0,
                         fail_above: Optional[float] = None) -> str:
  """Writes the model to ``path``; ``scale`` != 1 multiplies the output
  (a model that returns wrong values); ``fail_above`` makes a batch with a
  known value above it raise (a model that fails on some inputs). Returns ``path``."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  class MeanFill(tf.Module):

    def _restore(self, image, mask):
      known = 1.0 - mask
      if fail_above is not None:
        tf.debugging.assert_less_equal(tf.reduce_max(image * known),
                                       tf.constant(fail_above, tf.float32),
                                       message="test model refuses this batch")
      mean = tf.reduce_sum(image * known, axis=[1, 2], keepdims=True) / tf.maximum(
          tf.reduce_sum(known, axis=[1, 2], keepdims=True), 1.0)
      return (image * known + mean * mask) * scale

    @tf.function(input_signature=[
        tf.TensorSpec([None, None, None, bands], tf.float32),
        tf.TensorSpec([None, None, None, 1], tf.float32)
    ])
    def restore(self, image, mask):
      return {OUTPUT_RESTORED: self._restore(image, mask)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(self, examples):
      image_key, mask_key = EXAMPLE_FEATURES
      parsed = tf.io.parse_example(
          examples, {
              image_key: tf.io.FixedLenFeature([window * window * bands], tf.float32),
              mask_key: tf.io.FixedLenFeature([window * window], tf.float32)
          })
      image = tf.reshape(parsed[image_key], [-1, window, window, bands])
      mask = tf.reshape(parsed[mask_key], [-1, window, window, 1])
      return {OUTPUT_RESTORED: self._restore(image, mask)}

  module = MeanFill()
  card = ModelCard(name="mean-fill",
                   version=version,
                   bands=bands,
                   window=window,
                   overlap=overlap,
                   trained_on=["nothing: a test fixture"])
  asset_dir = tempfile.mkdtemp(prefix="cloudfill-card-")
  asset = os.path.join(asset_dir, ASSET_NAME)
  with open(asset, "w", encoding="utf-8") as f:
    f.write(card.to_json())
  module.card = tf.saved_model.Asset(asset)
  tf.saved_model.save(module,
                      path,
                      signatures={
                          SIGNATURE_RESTORE: module.restore.get_concrete_function(),
                          SIGNATURE_SERVING: module.serve.get_concrete_function()
                      })
  return path


def make_context_model(path: str,
                       *,
                       bands: int = 3,
                       window: int = 64,
                       overlap: int = 8,
                       version: str = "test-context-1") -> str:
  """A fake-but-real SavedModel with the five inputs of the context/guided
  contract: it returns ``context`` in the holes, averaged with ``guide``
  where the guide is usable (``guide_mask`` 0); known pixels unchanged.
  The card declares ``inputs``, ``guided: true``, ``context: "push_pull"``.
  """
  import json  # pylint: disable=import-outside-toplevel

  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  names = ("image", "mask", "context", "guide", "guide_mask")

  class ContextFill(tf.Module):

    def _restore(self, image, mask, context, guide, guide_mask):
      usable = 1.0 - guide_mask
      fill = context * guide_mask + 0.5 * (context + guide) * usable
      return image * (1.0 - mask) + fill * mask

    @tf.function(input_signature=[
        tf.TensorSpec([None, None, None, bands], tf.float32),
        tf.TensorSpec([None, None, None, 1], tf.float32),
        tf.TensorSpec([None, None, None, bands], tf.float32),
        tf.TensorSpec([None, None, None, bands], tf.float32),
        tf.TensorSpec([None, None, None, 1], tf.float32)
    ])
    def restore(self, image, mask, context, guide, guide_mask):
      return {OUTPUT_RESTORED: self._restore(image, mask, context, guide, guide_mask)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(self, examples):
      sizes = {"image": bands, "mask": 1, "context": bands, "guide": bands, "guide_mask": 1}
      parsed = tf.io.parse_example(examples, {
          k: tf.io.FixedLenFeature([window * window * c], tf.float32) for k, c in sizes.items()
      })
      t = {k: tf.reshape(parsed[k], [-1, window, window, c]) for k, c in sizes.items()}
      return {OUTPUT_RESTORED: self._restore(*(t[k] for k in names))}

  module = ContextFill()
  card = ModelCard(name="context-fill",
                   version=version,
                   bands=bands,
                   window=window,
                   overlap=overlap,
                   trained_on=["nothing: a test fixture"])
  d = json.loads(card.to_json())
  d.update(inputs=list(names), guided=True, context="push_pull")
  asset_dir = tempfile.mkdtemp(prefix="cloudfill-card-")
  asset = os.path.join(asset_dir, ASSET_NAME)
  with open(asset, "w", encoding="utf-8") as f:
    f.write(json.dumps(d, indent=2, sort_keys=True))
  module.card = tf.saved_model.Asset(asset)
  tf.saved_model.save(module,
                      path,
                      signatures={
                          SIGNATURE_RESTORE: module.restore.get_concrete_function(),
                          SIGNATURE_SERVING: module.serve.get_concrete_function()
                      })
  _write_tflite(module, path, window, bands)
  return path


def _write_tflite(module, path: str, window: int, bands: int) -> None:
  """The same fill as a TFLite file at one ``[1, window, window, *]`` window,
  where ``--backend tflite`` looks for it (``assets/cloudfill_dynamic.tflite``)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from model_loader.lite import tflite_path  # pylint: disable=import-outside-toplevel
  fixed = tf.function(
      module._restore,
      input_signature=[  # pylint: disable=protected-access
          tf.TensorSpec([1, window, window, c], tf.float32, name=n)
          for n, c in zip(("image", "mask", "context", "guide", "guide_mask"), (bands, 1, bands, bands, 1))
      ])

  def restore(image, mask, context, guide, guide_mask):
    return {OUTPUT_RESTORED: fixed(image, mask, context, guide, guide_mask)}

  fn = tf.function(restore, input_signature=fixed.input_signature).get_concrete_function()
  converter = tf.lite.TFLiteConverter.from_concrete_functions([fn], module)
  with open(tflite_path(path), "wb") as f:
    f.write(converter.convert())

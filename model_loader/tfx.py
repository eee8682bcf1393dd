"""The tfx-bsl backend: ``CreateModelHandler`` on the ``serving_default``
signature, which takes serialized ``tf.train.Example`` (as TF Serving does).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from model_loader.contract import EXAMPLE_FEATURES, OUTPUT_RESTORED, SIGNATURE_SERVING


def to_example(image: np.ndarray, mask: np.ndarray):
  """One window as the ``tf.train.Example`` that ``serving_default`` parses."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  image_key, mask_key = EXAMPLE_FEATURES
  return tf.train.Example(features=tf.train.Features(
      feature={
          image_key: tf.train.Feature(float_list=tf.train.FloatList(value=image.reshape(-1))),
          mask_key: tf.train.Feature(float_list=tf.train.FloatList(value=mask.reshape(-1))),
      }))


def _varint(n: int) -> bytes:
  out = bytearray()
  while True:
    b, n = n & 0x7F, n >> 7
    out.append(b | 0x80 if n else b)
    if not n:
      return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
  """One length-delimited protobuf field."""
  return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def serialize_example(image: np.ndarray, mask: np.ndarray, **extra: np.ndarray) -> bytes:
  """``to_example(image, mask).SerializeToString()``, written directly.

  The protobuf API copies floats one by one (about 270 ms for a 256x256x3
  window here); the wire format of a packed FloatList is the array's
  little-endian bytes (about 1 ms). tfx-bsl takes serialized Examples as is.
  ``extra`` features (``context``, ``guide``, ``guide_mask``) are added for
  models whose ``serving_default`` parses them.
  """

  def entry(key: str, values: np.ndarray) -> bytes:  # Features.feature map entry
    floats = _field(2, _field(1, np.ascontiguousarray(values, "<f4").tobytes()))
    return _field(1, _field(1, key.encode()) + _field(2, floats))

  image_key, mask_key = EXAMPLE_FEATURES
  body = entry(image_key, image.reshape(-1)) + entry(mask_key, mask.reshape(-1))
  for key, values in extra.items():  # context, guide, guide_mask (flattened like image/mask)
    body += entry(key, np.asarray(values).reshape(-1))
  return _field(1, body)


def restored_from_log(prediction_log: Any, shape: tuple[int, ...]) -> np.ndarray:
  """The ``restored`` array of one tfx-bsl ``PredictionLog``."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  response = prediction_log.predict_log.response
  tensor = response.outputs[OUTPUT_RESTORED]
  return tf.make_ndarray(tensor).reshape(shape)


def create_handler(model_uri: str,
                   *,
                   min_batch_size: Optional[int] = None,
                   max_batch_size: Optional[int] = None,
                   large_model: bool = False):
  """A keyed tfx-bsl model handler on the model's ``serving_default``."""
  # pylint: disable=import-outside-toplevel
  from apache_beam.ml.inference.base import KeyedModelHandler
  from tensorflow_serving.apis import prediction_log_pb2  # noqa: F401 (tfx-bsl needs it)
  from tfx_bsl.public.beam.run_inference import CreateModelHandler
  from tfx_bsl.public.proto import model_spec_pb2

  spec = model_spec_pb2.InferenceSpecType(
      saved_model_spec=model_spec_pb2.SavedModelSpec(model_path=model_uri, signature_name=[SIGNATURE_SERVING]))
  handler = CreateModelHandler(spec)
  kwargs = {}
  if min_batch_size is not None:
    kwargs["min_batch_size"] = min_batch_size
  if max_batch_size is not None:
    kwargs["max_batch_size"] = max_batch_size
  if kwargs:  # tfx-bsl's handlers keep their BatchElements arguments here.
    handler._batch_elements_kwargs = dict(handler.batch_elements_kwargs(), **kwargs)  # pylint: disable=protected-access
  if large_model:
    handler._large_model = True  # pylint: disable=protected-access
    handler._share_across_processes = True  # pylint: disable=protected-access
  return KeyedModelHandler(handler)

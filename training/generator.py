"""The generator: a correction over the scene-level context fill.

Inputs (a dict, or a tuple in this order), all float32:

* ``image`` ``[N, H, W, C]`` 0…1 (anything where missing);
* ``mask`` ``[N, H, W, 1]`` 1 = missing;
* ``context`` ``[N, H, W, C]`` 0…1: the classical fill computed by the
  pipeline over the whole tile or scene (:mod:`transforms.context`): the
  known pixels, and in the holes a push-pull fill that reaches the nearest
  known ground however far away it is, or the guide date mapped by a linear
  fit plus its interpolated residual;
* ``guide`` ``[N, H, W, C]`` 0…1: the guide date mapped to the target's
  radiometry (0 where unusable);
* ``guide_mask`` ``[N, H, W, 1]`` 1 = guide missing (all ones: no guide).

Output: ``[N, H, W, C]`` 0…1 (not composited: the pipeline pastes the known
pixels back). Inside, in order:

1. Pad H and W up to the network multiple (mirrored).
2. Standardise every band by the mean and spread of ``context`` over the
   window (known pixels and fill together: defined even for a window inside
   a cloud, and nearly equal for neighbouring windows).
3. Stem: a partial convolution (:mod:`training.partial_conv`) over what is
   observed (the image's known pixels and the guide's usable ones, with the
   union of both as validity) beside a plain convolution over the dense
   context and the two masks.
4. A U-Net (stride-2 convolutions down, dilated convolutions at the
   bottleneck for a wide receptive field, nearest upsampling and skip
   concatenation up; optionally contextual attention over known ground on
   the first decoder level, :mod:`training.attention`), whose
   zero-initialised last layer predicts a
   correction added to the standardised context: an untrained generator
   returns the context itself, never noise or a constant.
5. Undo the standardisation and crop the padding.

Written with ``keras.ops`` and Keras layers only (no ``tf.*``): it trains
under the JAX backend and exports under the TensorFlow backend, with the
same weights file (``.weights.h5``).
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import layers, ops

from training.attention import KnownAttention
from training.partial_conv import PartialConv2D

INPUTS = ("image", "mask", "context", "guide", "guide_mask")
DEFAULT_WIDTHS = (32, 64, 128, 192)
DEFAULT_STEM = 24
DEFAULT_DILATIONS = (2, 4)


def _act(x):
  return ops.leaky_relu(x, 0.2)


@keras.saving.register_keras_serializable(package="cloudfill")
class CloudfillGenerator(keras.Model):
  """Context-residual U-Net with a partial-convolution stem (module docstring).

  Args:
    bands: Number of image bands C.
    stem: Channels of each stem branch (full resolution).
    widths: Channels of the stride-2 levels (1/2, 1/4, …).
    dilations: Dilation rates of the bottleneck convolutions.
    attention: Contextual attention over known ground
      (:class:`training.attention.KnownAttention`) on the first decoder
      level (1/8 of the window for four levels); it starts as the identity.
  """

  def __init__(self,
               bands: int = 3,
               stem: int = DEFAULT_STEM,
               widths: Sequence[int] = DEFAULT_WIDTHS,
               dilations: Sequence[int] = DEFAULT_DILATIONS,
               attention: bool = False,
               **kwargs):
    super().__init__(**kwargs)
    self.bands = int(bands)
    self.stem_channels = int(stem)
    self.widths = tuple(int(w) for w in widths)
    self.dilations = tuple(int(d) for d in dilations)
    self.attention = bool(attention)
    self.multiple = 2**len(self.widths)
    conv = lambda c, name, **kw: layers.Conv2D(c, 3, padding="same", name=name, **kw)
    self.stem_obs = PartialConv2D(self.stem_channels, 5, 1, name="stem_pconv")
    self.stem_ctx = conv(self.stem_channels, "stem_ctx")
    self.down = [(layers.Conv2D(w, 3, strides=2, padding="same", name=f"down{i}"), conv(w, f"down{i}_b"))
                 for i, w in enumerate(self.widths)]
    self.mid = [conv(self.widths[-1], f"mid{i}", dilation_rate=d) for i, d in enumerate(self.dilations)]
    ups = list(reversed(self.widths[:-1])) + [2 * self.stem_channels]
    self.up = [conv(w, f"up{i}") for i, w in enumerate(ups)]
    self.upsample = layers.UpSampling2D(2, interpolation="nearest", name="upsample")
    self.out_conv = layers.Conv2D(self.bands, 3, padding="same", name="out", kernel_initializer="zeros")
    self.attend = KnownAttention(name="attention") if self.attention else None

  def get_config(self):
    config = dict(bands=self.bands,
                  stem=self.stem_channels,
                  widths=self.widths,
                  dilations=self.dilations,
                  name=self.name)
    if self.attention:  # Absent when off: cards and generator.json files of older models stay as they were.
      config["attention"] = True
    return config

  @staticmethod
  def _unpack(inputs):
    if isinstance(inputs, dict):
      return [inputs[k] for k in INPUTS]
    return list(inputs)

  def call(self, inputs, training=False):
    image, mask, context, guide, guide_mask = [ops.cast(t, "float32") for t in self._unpack(inputs)]
    shape = ops.shape(image)
    h, w = shape[1], shape[2]
    m = self.multiple
    ph, pw = (m - h % m) % m, (m - w % m) % m
    pad = [[0, 0], [0, ph], [0, pw], [0, 0]]
    image, mask, context, guide, guide_mask = [
        ops.pad(t, pad, mode="symmetric") for t in (image, mask, context, guide, guide_mask)
    ]
    valid = ops.cast(mask < 0.5, "float32")
    gvalid = ops.cast(guide_mask < 0.5, "float32")
    mean = ops.mean(context, axis=(1, 2), keepdims=True)
    var = ops.mean(ops.square(context - mean), axis=(1, 2), keepdims=True) + 1e-6
    # SQRT and RSQRT, no DIV: TFLite's INT8 DIV refuses a zero raw denominator.
    std, inv = ops.sqrt(var), ops.rsqrt(var)
    cs = (context - mean) * inv
    xs = (image - mean) * inv * valid
    gs = (guide - mean) * inv * gvalid
    dtype = self.compute_dtype
    obs, _ = self.stem_obs((ops.cast(ops.concatenate([xs, gs], -1), dtype), ops.maximum(valid, gvalid)))
    ctx = self.stem_ctx(ops.cast(ops.concatenate([cs, valid, gvalid, gs], -1), dtype))
    f = ops.concatenate([_act(obs), _act(ctx)], -1)
    skips = [f]
    for a, b in self.down:
      f = _act(b(_act(a(f))))
      skips.append(f)
    skips.pop()
    for layer in self.mid:
      f = f + _act(layer(f))
    for i, layer in enumerate(self.up):
      f = self.upsample(f)
      f = _act(layer(ops.concatenate([f, skips.pop()], -1)))
      if i == 0 and self.attend is not None:
        cell = self.multiple // 2
        known = ops.average_pool(valid, pool_size=cell, strides=cell, padding="valid")
        f = self.attend((f, known))
    correction = ops.cast(self.out_conv(f), "float32")
    out = (cs + correction) * std + mean
    return out[:, :h, :w, :]


def dummy_inputs(bands: int, size: int = 64, n: int = 1) -> dict:
  """Zero inputs of the generator's shapes (no guide), e.g. to build weights."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  z = np.zeros((n, size, size, bands), np.float32)
  ones = np.ones((n, size, size, 1), np.float32)
  return dict(image=z, mask=ones * 0, context=z, guide=z, guide_mask=ones)


def build_generator(bands: int = 3, size: int = 64, **kwargs) -> CloudfillGenerator:
  """Builds a :class:`CloudfillGenerator` and creates its weights.

  Args:
    bands: Number of image bands.
    size: Side of the dummy input used to create the weights.
    **kwargs: Passed to :class:`CloudfillGenerator`.
  """
  g = CloudfillGenerator(bands=bands, **kwargs)
  g(dummy_inputs(bands, size))
  return g


def load_weights(gen: CloudfillGenerator, path: str) -> None:
  """Loads a ``.weights.h5`` into ``gen``, also one saved without attention.

  A generator with attention (``attention=True``) takes the weights of the
  same generator without it: every other layer's weights are copied, and the
  new layer keeps its identity start (:mod:`training.attention`), so the
  model computes exactly what the loaded one did.

  Raises:
    ValueError: the file does not fit ``gen``, e.g. it holds attention
      weights and ``gen`` has none (Keras alone would drop them silently).
  """
  import h5py  # pylint: disable=import-outside-toplevel  (Keras' own dependency)
  with h5py.File(path, "r") as f:
    has_attention = "attend" in f
  if has_attention and not gen.attention:
    raise ValueError(f"{path} holds contextual-attention weights: build the generator with attention=True "
                     "(the run's generator.json says so)")
  if has_attention or not gen.attention:
    gen.load_weights(path)
    return
  config = gen.get_config()
  config.pop("attention")
  config.pop("name", None)
  plain = build_generator(**config)
  plain.load_weights(path)
  for layer in plain.layers:
    gen.get_layer(layer.name).set_weights(layer.get_weights())

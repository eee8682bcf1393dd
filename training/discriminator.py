"""Multi-scale PatchGAN discriminator with spectral normalisation.

Fed the *composited* image (known pixels from the input, holes from the
generator) concatenated with the hole mask; one PatchGAN sees the full
resolution, another the image averaged down by 2 (pix2pixHD's multi-scale
design), so both texture and larger structures are judged. Returns the
per-patch logits of each scale and their intermediate features (for the
feature-matching loss). ``keras.ops`` only: trains under JAX or TensorFlow.
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="cloudfill")
class PatchDiscriminator(keras.Model):
  """One PatchGAN (stride-2 4x4 convs, LeakyReLU 0.2), each conv wrapped in
  :class:`keras.layers.SpectralNormalization`.

  Args:
    channels: Output channels of the convs before the logit conv; all but
      the last use stride 2.
  """

  def __init__(self, channels: Sequence[int] = (64, 128, 256, 256), **kwargs):
    super().__init__(**kwargs)
    self.channels = tuple(int(c) for c in channels)
    n = len(self.channels)
    self.convs = [
        layers.SpectralNormalization(layers.Conv2D(c, 4, strides=2 if i < n - 1 else 1, padding="same"),
                                     name=f"sn_conv{i}") for i, c in enumerate(self.channels)
    ]
    self.logit = layers.SpectralNormalization(layers.Conv2D(1, 4, padding="same"), name="sn_logit")

  def get_config(self):
    return dict(channels=self.channels, name=self.name)

  def call(self, inputs, training=False):
    image, mask = inputs
    x = ops.concatenate([ops.cast(image, self.compute_dtype), ops.cast(mask, self.compute_dtype)], -1)
    feats = []
    for conv in self.convs:
      x = ops.leaky_relu(conv(x, training=training), 0.2)
      feats.append(x)
    return ops.cast(self.logit(x, training=training), "float32"), feats


@keras.saving.register_keras_serializable(package="cloudfill")
class MultiScaleDiscriminator(keras.Model):
  """PatchGANs at ``scales`` resolutions (1, 1/2, …).

  Returns ``(logits, feats)``: a list of logit maps (one per scale) and the
  concatenated list of every scale's features.
  """

  def __init__(self, channels: Sequence[int] = (64, 128, 256, 256), scales: int = 2, **kwargs):
    super().__init__(**kwargs)
    self.channels, self.scales = tuple(int(c) for c in channels), int(scales)
    self.nets = [PatchDiscriminator(self.channels, name=f"patch{s}") for s in range(self.scales)]
    self.pool = layers.AveragePooling2D(2, name="pool")

  def get_config(self):
    return dict(channels=self.channels, scales=self.scales, name=self.name)

  def call(self, inputs, training=False):
    image, mask = inputs
    logits, feats = [], []
    for s, net in enumerate(self.nets):
      if s:
        image, mask = self.pool(image), self.pool(mask)
      lg, ft = net((image, mask), training=training)
      logits.append(lg)
      feats.extend(ft)
    return logits, feats

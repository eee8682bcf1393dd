"""PatchGAN discriminator with spectral normalisation.

Fed the *composited* image (known pixels from the input, holes from the
generator) concatenated with the hole mask; returns per-patch logits and the
intermediate features (for the feature-matching loss).
"""

from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="cloudfill")
class PatchDiscriminator(keras.Model):
  """70x70-style PatchGAN (stride-2 4x4 convs, LeakyReLU 0.2), each conv
  wrapped in :class:`keras.layers.SpectralNormalization`.

  Args:
    channels: Output channels of the convs before the logit conv; all but
      the last use stride 2.
  """

  def __init__(self, channels: Sequence[int] = (64, 128, 256, 256), **kwargs):
    super().__init__(**kwargs)
    self.channels = tuple(int(c) for c in channels)
    n = len(self.channels)
    self.convs = [keras.layers.SpectralNormalization(
        keras.layers.Conv2D(c, 4, strides=2 if i < n - 1 else 1,
                            padding="same"), name=f"sn_conv{i}")
                  for i, c in enumerate(self.channels)]
    self.logit = keras.layers.SpectralNormalization(
        keras.layers.Conv2D(1, 4, padding="same"), name="sn_logit")

  def get_config(self):
    return dict(channels=self.channels, name=self.name)

  def call(self, inputs, training=False):
    image, mask = inputs
    x = tf.concat([tf.cast(image, self.compute_dtype),
                   tf.cast(mask, self.compute_dtype)], -1)
    feats = []
    for conv in self.convs:
      x = tf.nn.leaky_relu(conv(x, training=training), 0.2)
      feats.append(x)
    return tf.cast(self.logit(x, training=training), tf.float32), feats

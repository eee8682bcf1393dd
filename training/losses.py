"""Losses: hole/valid-weighted L1, hole-boundary total variation,
adversarial (hinge, LSGAN, WGAN-GP) and discriminator feature matching.

Conventions: ``target`` and ``output`` ``[N, H, W, C]`` in 0…1, ``mask``
``[N, H, W, 1]`` with 1 = hole. No pretrained (VGG) perceptual loss.
"""

from __future__ import annotations

from typing import Callable, Sequence

import tensorflow as tf

ADVERSARIAL = ("hinge", "lsgan", "wgan-gp")


def composite(target, output, mask):
  """Known pixels from ``target``, holes from ``output``."""
  return target * (1.0 - mask) + output * mask


def l1_hole_valid(target, output, mask, hole_weight=6.0, valid_weight=1.0):
  """Weighted L1 (Liu et al. 2018): ``hole_weight`` on holes, ``valid_weight``
  on known pixels; both terms averaged over all pixels.

  Returns:
    ``(total, hole_term, valid_term)`` scalars.
  """
  d = tf.abs(target - output)
  hole = tf.reduce_mean(d * mask)
  valid = tf.reduce_mean(d * (1.0 - mask))
  return hole_weight * hole + valid_weight * valid, hole, valid


def tv_hole_boundary(target, output, mask):
  """Total variation of the composite on the holes dilated by one pixel."""
  comp = composite(target, output, mask)
  region = tf.nn.max_pool2d(mask, 3, 1, "SAME")
  dy = tf.abs(comp[:, 1:] - comp[:, :-1]) * region[:, 1:] * region[:, :-1]
  dx = (tf.abs(comp[:, :, 1:] - comp[:, :, :-1]) * region[:, :, 1:]
        * region[:, :, :-1])
  return tf.reduce_mean(dy) + tf.reduce_mean(dx)


def d_loss(kind: str, real_logits, fake_logits):
  """Discriminator loss (without the WGAN-GP penalty term)."""
  if kind == "hinge":
    return (tf.reduce_mean(tf.nn.relu(1.0 - real_logits))
            + tf.reduce_mean(tf.nn.relu(1.0 + fake_logits)))
  if kind == "lsgan":
    return 0.5 * (tf.reduce_mean(tf.square(real_logits - 1.0))
                  + tf.reduce_mean(tf.square(fake_logits)))
  if kind == "wgan-gp":
    return tf.reduce_mean(fake_logits) - tf.reduce_mean(real_logits)
  raise ValueError(f"unknown adversarial loss {kind!r}")


def g_loss(kind: str, fake_logits):
  """Generator adversarial loss."""
  if kind in ("hinge", "wgan-gp"):
    return -tf.reduce_mean(fake_logits)
  if kind == "lsgan":
    return 0.5 * tf.reduce_mean(tf.square(fake_logits - 1.0))
  raise ValueError(f"unknown adversarial loss {kind!r}")


def gradient_penalty(disc: Callable, real, fake, mask, seed=None):
  """WGAN-GP penalty ``(||grad D(x_hat)|| - 1)^2`` on interpolates."""
  eps = tf.random.uniform([tf.shape(real)[0], 1, 1, 1], seed=seed)
  x_hat = eps * real + (1.0 - eps) * fake
  with tf.GradientTape() as tape:
    tape.watch(x_hat)
    logits, _ = disc((x_hat, mask), training=True)
  g = tape.gradient(logits, x_hat)
  norm = tf.sqrt(tf.reduce_sum(tf.square(g), axis=[1, 2, 3]) + 1e-12)
  return tf.reduce_mean(tf.square(norm - 1.0))


def feature_matching(real_feats: Sequence, fake_feats: Sequence):
  """Mean L1 between discriminator features of real and fake inputs."""
  terms = [tf.reduce_mean(tf.abs(tf.stop_gradient(r) - f))
           for r, f in zip(real_feats, fake_feats)]
  return tf.add_n(terms) / len(terms)


def hole_psnr(target, output, mask):
  """Per-tile PSNR (dB, peak 1) over hole pixels: ``[N]``."""
  c = tf.cast(tf.shape(target)[-1], tf.float32)
  se = tf.reduce_sum(tf.square(target - output) * mask, axis=[1, 2, 3])
  n = tf.reduce_sum(mask, axis=[1, 2, 3]) * c
  mse = tf.maximum(se / tf.maximum(n, 1.0), 1e-10)
  return -10.0 * tf.math.log(mse) / tf.math.log(10.0)

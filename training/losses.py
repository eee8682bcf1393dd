"""Losses: hole/valid-weighted L1, hole-boundary total variation,
adversarial (hinge, LSGAN), discriminator feature matching, and the
figures the trainer reports (hole PSNR, a realism distance).

Conventions: ``target`` and ``output`` ``[N, H, W, C]`` in 0…1, ``mask``
``[N, H, W, 1]`` with 1 = hole. ``keras.ops`` only (JAX or TensorFlow).
No pretrained (VGG) perceptual loss: nothing is downloaded.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from keras import ops


def composite(target, output, mask):
  """Known pixels from ``target``, holes from ``output``."""
  return target * (1.0 - mask) + output * mask


def l1_hole_valid(target, output, mask, hole_weight=6.0, valid_weight=1.0):
  """Weighted L1 (Liu et al. 2018): ``hole_weight`` on holes, ``valid_weight``
  on known pixels; both terms averaged over all pixels.

  Returns:
    ``(total, hole_term, valid_term)`` scalars.
  """
  d = ops.abs(target - output)
  hole = ops.mean(d * mask)
  valid = ops.mean(d * (1.0 - mask))
  return hole_weight * hole + valid_weight * valid, hole, valid


def hole_reconstruction(kind: str, target, output, mask):
  """Mean absolute (``"l1"``) or squared (``"mse"``) error on the holes,
  averaged over all pixels (so a batch with more holes weighs more)."""
  d = target - output
  if kind == "l1":
    return ops.mean(ops.abs(d) * mask)
  if kind == "mse":
    return ops.mean(ops.square(d) * mask)
  raise ValueError(f"unknown reconstruction loss {kind!r}")


def tv_hole_boundary(target, output, mask):
  """Total variation of the composite on the holes dilated by one pixel."""
  comp = composite(target, output, mask)
  region = ops.max_pool(mask, 3, 1, "same")
  dy = ops.abs(comp[:, 1:] - comp[:, :-1]) * region[:, 1:] * region[:, :-1]
  dx = ops.abs(comp[:, :, 1:] - comp[:, :, :-1]) * region[:, :, 1:] * region[:, :, :-1]
  return ops.mean(dy) + ops.mean(dx)


def d_loss(kind: str, real_logits: Sequence, fake_logits: Sequence):
  """Discriminator loss, averaged over scales."""
  terms = []
  for r, f in zip(real_logits, fake_logits):
    if kind == "hinge":
      terms.append(ops.mean(ops.relu(1.0 - r)) + ops.mean(ops.relu(1.0 + f)))
    elif kind == "lsgan":
      terms.append(0.5 * (ops.mean(ops.square(r - 1.0)) + ops.mean(ops.square(f))))
    else:
      raise ValueError(f"unknown adversarial loss {kind!r}")
  return sum(terms) / len(terms)


def g_loss(kind: str, fake_logits: Sequence):
  """Generator adversarial loss, averaged over scales."""
  terms = []
  for f in fake_logits:
    if kind == "hinge":
      terms.append(-ops.mean(f))
    elif kind == "lsgan":
      terms.append(0.5 * ops.mean(ops.square(f - 1.0)))
    else:
      raise ValueError(f"unknown adversarial loss {kind!r}")
  return sum(terms) / len(terms)


def feature_matching(real_feats: Sequence, fake_feats: Sequence):
  """Mean L1 between discriminator features of real and fake inputs."""
  terms = [ops.mean(ops.abs(ops.stop_gradient(r) - f)) for r, f in zip(real_feats, fake_feats)]
  return sum(terms) / len(terms)


def hole_psnr(target, output, mask):
  """Per-tile PSNR (dB, peak 1) over hole pixels: ``[N]``."""
  c = float(target.shape[-1])
  se = ops.sum(ops.square(target - output) * mask, axis=(1, 2, 3))
  n = ops.sum(mask, axis=(1, 2, 3)) * c
  mse = ops.maximum(se / ops.maximum(n, 1.0), 1e-10)
  return -10.0 * ops.log(mse) / np.log(10.0)


def gradient_histogram_distance(target: np.ndarray,
                                output: np.ndarray,
                                mask: np.ndarray,
                                bins: int = 64,
                                top: float = 0.25) -> float:
  """Realism: distance between the gradient-magnitude histograms of the fill
  and the truth inside the holes (numpy; 0 = the same texture statistics).

  A blurry fill has too many small gradients; a sharp, realistic one matches
  the truth's histogram even where it does not match its pixels. Returns the
  total-variation distance (half the L1 distance, 0…1) of the normalised
  histograms of ``|∇|`` on ``[0, top]``.
  """

  def grad(a):
    gy = np.abs(np.diff(a, axis=1))[:, :, :-1]
    gx = np.abs(np.diff(a, axis=2))[:, :-1, :]
    return np.sqrt(gx**2 + gy**2).mean(-1)

  m = (mask[:, :-1, :-1, 0] > 0.5) & (mask[:, 1:, 1:, 0] > 0.5)
  if not m.any():
    return 0.0
  edges = np.linspace(0.0, top, bins + 1)
  ht = np.histogram(np.clip(grad(target)[m], 0, top), edges)[0].astype(np.float64)
  ho = np.histogram(np.clip(grad(output)[m], 0, top), edges)[0].astype(np.float64)
  return float(0.5 * np.abs(ht / ht.sum() - ho / ho.sum()).sum())

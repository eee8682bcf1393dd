"""Contextual attention over known ground (after Yu et al., 2018, "Generative
Image Inpainting with Contextual Attention"), written as a non-local layer.

Yu et al. let each hole location borrow features from the known locations
whose patches it resembles (cosine similarity, softmax with a scale of 10).
Here the patches are the feature cells of a coarse decoder level, compared in
learned projections, and "known" is soft: the fraction of known ground under
each cell. For features ``F`` ``[N, h, w, C]`` and that fraction ``k``
``[N, h, w, 1]``::

  q = F Wq,  key = F Wk      [N, hw, D]   (both scaled to unit length)
  v = F Wv                   [N, hw, C]
  logits_ij = scale * <q_i, key_j> + log(k_j + eps)
  out = F + (softmax_j(logits) v) Wo

Every cell queries; a cell with no known ground under it gets a bias of
``log(eps)`` (about −27.6) as a key, beyond the span of the similarities
(``2 * scale`` = 20), so it is read only where nothing else is known (then
every cell weighs the same: no division by zero, no NaN). ``Wo``
starts at zero: the layer returns ``F`` unchanged until it learns, so it can
be added to a trained generator and trained on from its weights.

Written with ``keras.ops`` only, like the rest of the generator: it trains
under JAX and exports under TensorFlow (SavedModel and TFLite).
"""

from __future__ import annotations

import keras
from keras import ops

EPS = 1e-12
SCALE = 10.0


def _unit(x):
  return x * ops.rsqrt(ops.sum(ops.square(x), axis=-1, keepdims=True) + 1e-6)


@keras.saving.register_keras_serializable(package="cloudfill")
class KnownAttention(keras.layers.Layer):
  """Contextual attention (module docstring).

  Call it on ``(features, known)``: ``features`` ``[N, h, w, C]``, ``known``
  ``[N, h, w, 1]`` in 0…1 (the fraction of known ground under each cell).
  Returns ``[N, h, w, C]``.

  Args:
    key_dim: D, the width of the compared projections.
    scale: Softmax scale of the cosine similarities (Yu et al.: 10).
  """

  def __init__(self, key_dim: int = 32, scale: float = SCALE, **kwargs):
    super().__init__(**kwargs)
    self.key_dim = int(key_dim)
    self.scale = float(scale)

  def build(self, input_shape):
    c = int(input_shape[0][-1])
    d = self.key_dim
    self.wq = self.add_weight(name="query", shape=(c, d), initializer="glorot_uniform")
    self.wk = self.add_weight(name="key", shape=(c, d), initializer="glorot_uniform")
    self.wv = self.add_weight(name="value", shape=(c, c), initializer="glorot_uniform")
    self.wo = self.add_weight(name="out", shape=(c, c), initializer="zeros")

  def get_config(self):
    return {**super().get_config(), "key_dim": self.key_dim, "scale": self.scale}

  def call(self, inputs):
    features, known = inputs
    shape = ops.shape(features)
    n, h, w, c = shape[0], shape[1], shape[2], shape[3]
    f = ops.reshape(features, (n, h * w, c))
    # Similarities and softmax in float32 (bf16 logits lose the ranking).
    f32 = ops.cast(f, "float32")
    q = _unit(ops.matmul(f32, ops.cast(self.wq, "float32")))
    k = _unit(ops.matmul(f32, ops.cast(self.wk, "float32")))
    bias = ops.log(ops.reshape(ops.cast(known, "float32"), (n, 1, h * w)) + EPS)
    logits = self.scale * ops.matmul(q, ops.transpose(k, (0, 2, 1))) + bias
    attn = ops.softmax(logits, axis=-1)
    v = ops.matmul(f, ops.cast(self.wv, f.dtype))
    read = ops.matmul(ops.cast(attn, f.dtype), v)
    out = f + ops.matmul(read, ops.cast(self.wo, f.dtype))
    return ops.reshape(out, shape)


def reference(features, known, wq, wk, wv, wo, scale: float = SCALE):
  """The same computation in plain numpy, for tests (float64)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  n, h, w, c = features.shape
  f = features.reshape(n, h * w, c).astype(np.float64)
  out = np.empty_like(f)
  for b in range(n):
    q = f[b] @ wq
    k = f[b] @ wk
    q /= np.sqrt((q * q).sum(-1, keepdims=True) + 1e-6)
    k /= np.sqrt((k * k).sum(-1, keepdims=True) + 1e-6)
    logits = scale * q @ k.T + np.log(known[b].reshape(1, h * w) + EPS)
    logits -= logits.max(-1, keepdims=True)
    a = np.exp(logits)
    a /= a.sum(-1, keepdims=True)
    out[b] = f[b] + (a @ (f[b] @ wv)) @ wo
  return out.reshape(n, h, w, c)

"""Partial convolution (Liu et al., 2018, "Image Inpainting for Irregular
Holes Using Partial Convolutions"), following NVIDIA's reference code.

For a window W of the input X with validity mask M (1 = known pixel)::

  out = (sum(W ⊙ X ⊙ M) * window_size / sum(M) + b) * m'   where sum(M) > 0
  out = 0                                                    where sum(M) = 0
  m'  = 1 if sum(M) > 0 else 0

One mask channel is shared by all feature channels, so ``window_size`` is
``kh * kw`` (the reference's ``kh * kw * C_in / (C_in * sum)`` ratio reduces
to this). The mask sum is a convolution with a ones kernel, never a learned
per-filter convolution. Zero padding counts as missing, as in the reference.

Written with ``keras.ops`` only: the same layer runs under the JAX backend
(training on a GPU machine without TensorFlow) and the TensorFlow backend
(export to the SavedModel contract and TFLite).
"""

from __future__ import annotations

import keras
from keras import ops

from training.ops import div


def _pair(v):
  return (v, v) if isinstance(v, int) else tuple(v)


class PartialConv2D(keras.layers.Layer):
  """2-D partial convolution with mask update.

  Call it on ``(x, valid)`` with ``x`` ``[N, H, W, C]`` and ``valid``
  ``[N, H, W, 1]`` (1 = known). Returns ``(y, valid_out)``.

  Args:
    filters: Number of output channels.
    kernel_size: Kernel side (int or pair).
    strides: Stride (int or pair).
    use_bias: Add a bias after the rescaling.
    kernel_initializer: Keras initializer for the kernel.
    bias_initializer: Keras initializer for the bias.
  """

  def __init__(self,
               filters,
               kernel_size,
               strides=1,
               use_bias=True,
               kernel_initializer="he_normal",
               bias_initializer="zeros",
               **kwargs):
    super().__init__(**kwargs)
    self.filters = int(filters)
    self.kernel_size = _pair(kernel_size)
    self.strides = _pair(strides)
    self.use_bias = use_bias
    self.kernel_initializer = keras.initializers.get(kernel_initializer)
    self.bias_initializer = keras.initializers.get(bias_initializer)

  def build(self, input_shape):
    x_shape = input_shape[0]
    cin = int(x_shape[-1])
    kh, kw = self.kernel_size
    self.kernel = self.add_weight(name="kernel", shape=(kh, kw, cin, self.filters), initializer=self.kernel_initializer)
    self.bias = (self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer)
                 if self.use_bias else None)

  def call(self, inputs):
    x, valid = inputs
    kh, kw = self.kernel_size
    valid = ops.cast(valid, x.dtype)
    y = ops.conv(x * valid, ops.cast(self.kernel, x.dtype), strides=self.strides, padding="same")
    # Mask bookkeeping in float32 (exact small integers even under fp16/bf16).
    v32 = ops.cast(valid, "float32")
    ones = ops.ones((kh, kw, 1, 1), "float32")
    msum = ops.conv(v32, ones, strides=self.strides, padding="same")
    new_valid = ops.clip(msum, 0.0, 1.0)
    # max(sum, 1) rather than a tiny eps: masks are binary, so the sum is 0
    # or >= 1, and 1 survives float16 and INT8 (TFLite) quantisation.
    ratio = div(float(kh * kw), ops.maximum(msum, 1.0)) * new_valid
    y = y * ops.cast(ratio, y.dtype)
    if self.bias is not None:
      y = y + ops.cast(self.bias, y.dtype)
    y = y * ops.cast(new_valid, y.dtype)
    return y, ops.cast(new_valid, x.dtype)

  def compute_output_shape(self, input_shape):
    x_shape, m_shape = input_shape

    def out(n, s):
      return None if n is None else -(-n // s)

    h = out(x_shape[1], self.strides[0])
    w = out(x_shape[2], self.strides[1])
    return ((x_shape[0], h, w, self.filters), (m_shape[0], h, w, 1))

  def get_config(self):
    cfg = super().get_config()
    cfg.update(filters=self.filters,
               kernel_size=self.kernel_size,
               strides=self.strides,
               use_bias=self.use_bias,
               kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
               bias_initializer=keras.initializers.serialize(self.bias_initializer))
    return cfg

"""PartialConv2D against a hand-written numpy reference (Liu et al. 2018)."""

import numpy as np
import pytest
import tensorflow as tf

from training.partial_conv import PartialConv2D


def _reference(x, valid, kernel, bias, stride):
  """Loop implementation of the NVIDIA partial convolution, SAME padding
  (TensorFlow's asymmetric split), zero padding counted as missing."""
  n, h, w, cin = x.shape
  kh, kw, _, cout = kernel.shape
  oh, ow = -(-h // stride), -(-w // stride)
  ph = max((oh - 1) * stride + kh - h, 0)
  pw = max((ow - 1) * stride + kw - w, 0)
  xp = np.pad(x * valid, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
  vp = np.pad(valid, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
  y = np.zeros((n, oh, ow, cout))
  m = np.zeros((n, oh, ow, 1))
  for b in range(n):
    for i in range(oh):
      for j in range(ow):
        win = xp[b, i * stride:i * stride + kh, j * stride:j * stride + kw]
        vwin = vp[b, i * stride:i * stride + kh, j * stride:j * stride + kw]
        s = vwin.sum()
        if s > 0:
          conv = np.tensordot(win, kernel, axes=([0, 1, 2], [0, 1, 2]))
          y[b, i, j] = conv * (kh * kw) / s + bias
          m[b, i, j] = 1
  return y, m


@pytest.mark.parametrize("stride,k", [(1, 3), (2, 5), (2, 4)])
def test_matches_numpy_reference(stride, k):
  rng = np.random.default_rng(stride * 10 + k)
  x = rng.standard_normal((2, 11, 9, 3)).astype(np.float32)
  valid = (rng.random((2, 11, 9, 1)) > 0.6).astype(np.float32)
  valid[1, :6, :] = 0  # a large hole: windows with no valid pixel
  layer = PartialConv2D(4, k, stride, bias_initializer="random_normal")
  y, m = layer((tf.constant(x), tf.constant(valid)))
  ry, rm = _reference(x, valid, layer.kernel.numpy(), layer.bias.numpy(), stride)
  np.testing.assert_allclose(m.numpy(), rm)
  np.testing.assert_allclose(y.numpy(), ry, rtol=1e-4, atol=1e-4)
  assert (rm == 0).any() and (rm == 1).any()


def test_holes_output_zero_and_mask_propagates():
  x = np.ones((1, 8, 8, 2), np.float32)
  valid = np.ones((1, 8, 8, 1), np.float32)
  valid[0, 2:7, 2:7] = 0
  layer = PartialConv2D(3, 3, 1, bias_initializer="ones")
  y, m = layer((tf.constant(x), tf.constant(valid)))
  y, m = y.numpy(), m.numpy()
  assert m[0, 4, 4, 0] == 0 and np.all(y[0, 4, 4] == 0)  # saw no valid pixel
  assert m[0, 2, 2, 0] == 1  # sees a corner pixel
  assert m.sum() > valid.sum()  # the hole shrank


def test_constant_input_is_rescaled_exactly():
  """With a ones kernel, any window with a valid pixel returns the full-window
  response of a constant image: the window_size / sum(M) rescaling."""
  x = np.full((1, 6, 6, 1), 2.0, np.float32)
  valid = (np.arange(36).reshape(1, 6, 6, 1) % 3 == 0).astype(np.float32)
  layer = PartialConv2D(1, 3, 1, kernel_initializer="ones", use_bias=False)
  y, m = layer((tf.constant(x), tf.constant(valid)))
  np.testing.assert_allclose(y.numpy()[m.numpy() > 0], 2.0 * 9, rtol=1e-6)

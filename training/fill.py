"""A cheap initial fill computed inside the graph.

Push-pull (pyramid) interpolation: known pixels are averaged down a pyramid
with their validity as weight ("push"), then holes are filled from the
coarser level on the way back up ("pull"), with masked 3x3 smoothing (Jacobi)
sweeps per level so the result is close to a membrane (harmonic)
interpolation, i.e. what GDAL FillNodata does. The generator predicts a
correction on top of it, so an untrained generator already returns this
smooth fill instead of noise.

Only padding, slicing, reshapes and elementwise ops (pooling ops are slow
on CPU): exports to TFLite, INT8 included.
"""

from __future__ import annotations

import tensorflow as tf

from training.ops import div


def _box3(f):
  """3x3 box mean with mirrored edges."""
  p = tf.pad(f, [[0, 0], [1, 1], [1, 1], [0, 0]], "SYMMETRIC")
  v = p[:, :-2] + p[:, 1:-1] + p[:, 2:]
  return (v[:, :, :-2] + v[:, :, 1:-1] + v[:, :, 2:]) * (1.0 / 9.0)


def _pool2(x):
  """2x2 mean, stride 2 (odd sides padded with zeros, which carry zero
  weight in :func:`_down`)."""
  s = tf.shape(x)
  x = tf.pad(x, [[0, 0], [0, s[1] % 2], [0, s[2] % 2], [0, 0]])
  s = tf.shape(x)
  c = x.shape[-1]
  r = tf.reshape(x, [s[0], s[1] // 2, 2, s[2] // 2, 2, c])
  return tf.reduce_mean(r, axis=[2, 4])


# Smallest weight a division sees: weights are 0…1 fractions, and 0.01 stays
# non-zero after INT8 quantisation (divide_no_nan becomes a plain DIV there).
_EPS = 0.01


def _down(x, w):
  pw = _pool2(w)
  return div(_pool2(x * w), tf.maximum(pw, _EPS)), pw


def push_pull_fill(x, valid, levels=5, sweeps=(2, 3, 4, 4, 4, 4)):
  """Fills pixels where ``valid`` is 0 from the known pixels around them.

  Args:
    x: ``[N, H, W, C]`` values (anything where ``valid`` is 0).
    valid: ``[N, H, W, 1]`` weights in 0…1, 1 = known.
    levels: Pyramid depth.
    sweeps: Masked 3x3 smoothing sweeps per level (finest first) on the way
      up.

  Returns:
    ``[N, H, W, C]``: ``x`` where valid, interpolated elsewhere (the mean
    of the known pixels where none is near; 0 if none is known at all).
  """
  xs, ws = [x * valid], [valid]
  cx, cw = x * valid, valid
  for _ in range(levels):
    cx, cw = _down(cx, cw)
    xs.append(cx)
    ws.append(cw)
  # Cells no known pixel reaches even at the coarsest level get the global
  # (weighted) mean.
  f = div(tf.reduce_mean(cx * cw, axis=[1, 2], keepdims=True),
          tf.maximum(tf.reduce_mean(cw, axis=[1, 2], keepdims=True), _EPS)
          ) + 0.0 * cx
  for lvl in range(levels, -1, -1):
    if lvl < levels:
      s = tf.shape(xs[lvl])
      up = tf.image.resize(f, s[1:3], method="nearest")
      f = _box3(up)
    w = tf.clip_by_value(ws[lvl], 0.0, 1.0)
    known = xs[lvl] * w
    f = known + (1.0 - w) * f
    for _ in range(sweeps[min(lvl, len(sweeps) - 1)]):
      f = known + (1.0 - w) * _box3(f)
  return f

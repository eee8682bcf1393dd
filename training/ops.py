"""Small numeric helpers shared by the model layers (backend-agnostic Keras 3)."""

from __future__ import annotations

from keras import ops


def div(a, b):
  """``a / b`` for positive ``b``, written as ``a * rsqrt(b) ** 2``.

  TFLite's INT8 DIV kernel rejects a denominator whose *raw* int8 value is 0
  (a legitimate value whenever the zero point is not 0), so the INT8 model
  would crash on ordinary tiles; RSQRT and MUL quantise without that trap.
  In float the result equals ``a / b`` to rounding.
  """
  r = ops.rsqrt(b)
  return a * (r * r)

"""Value scaling: a tile's values to the model's 0…1 and back.

Every stage that hands pixels to the model or measures them on the model's
scale uses these (window, scenes, guide, neighbours, preview, composite,
write, metrics), so the scale is defined once.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

# Default value ranges by dtype, mapped to 0…1 for the model.
DTYPE_RANGES = {
    "uint8": (0.0, 255.0),
    "uint16": (0.0, 65535.0),
    "int16": (-32768.0, 32767.0),
    "float32": (0.0, 1.0),
}


def value_range(dtype: str, override: Optional[Sequence[float]] = None) -> tuple[float, float]:
  """``(lo, hi)`` that 0…1 stands for: ``override`` (``--value-range``) or the dtype's range.

  Raises:
    ValueError: an empty range.
    KeyError: a dtype without a default range and no override.
  """
  if override:
    lo, hi = float(override[0]), float(override[1])
  else:
    lo, hi = DTYPE_RANGES[dtype]
  if hi <= lo:
    raise ValueError(f"value range [{lo}, {hi}] is empty")
  return lo, hi


def to_unit(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
  """``values`` (any shape, any dtype) as float32 on 0…1; NaN and ±inf become 0."""
  out = (values.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo)
  if np.isfinite(out).all():  # Integer input always (one pass, no copies).
    return out
  return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def from_unit(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
  """0…1 ``values`` back on the ``lo``…``hi`` scale, float32 (not clipped, not cast)."""
  return values.astype(np.float32) * np.float32(hi - lo) + np.float32(lo)

"""Masks from QA bands as users get them: bit flags and class values.

* ``--mask-bits 1,3,4``: a pixel is missing when any of these bits is set in
  an integer QA mask (Landsat Collection 2 ``QA_PIXEL``: bit 1 dilated cloud,
  2 cirrus, 3 cloud, 4 cloud shadow, 5 snow).
* ``--mask-values 3,8,9,10``: a pixel is missing when the mask holds one of
  these class values (Sentinel-2 ``SCL``: 3 cloud shadow, 8 and 9 cloud of
  medium and high probability, 10 thin cirrus).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _single_band(values: np.ndarray, what: str) -> np.ndarray:
  """``[H, W]`` from ``[H, W]`` or ``[H, W, 1]``; several bands are refused."""
  if values.ndim == 3:
    if values.shape[2] != 1:
      raise ValueError(f"{what} needs a one-band QA mask; this one has {values.shape[2]} bands")
    values = values[:, :, 0]
  return values


def bits_set(values: np.ndarray, bits: Sequence[int]) -> np.ndarray:
  """``[H, W]`` bool: any of ``bits`` set in the integer mask ``values``.

  Raises:
    ValueError: a float mask, several bands, or a bit beyond the dtype.
  """
  values = _single_band(values, "--mask-bits")
  if values.dtype.kind not in "iu":
    raise ValueError(f"--mask-bits needs an integer QA mask; this one is {values.dtype}")
  width = values.dtype.itemsize * 8
  if any(b >= width for b in bits):
    raise ValueError(f"--mask-bits {','.join(map(str, bits))}: the QA mask is {values.dtype} ({width} bits)")
  flags = 0
  for b in bits:
    flags |= 1 << int(b)
  return (values.astype(np.uint64) & np.uint64(flags)) != 0


def values_in(values: np.ndarray, classes: Sequence[int]) -> np.ndarray:
  """``[H, W]`` bool: the mask's value is one of ``classes``."""
  values = _single_band(values, "--mask-values")
  return np.isin(values, np.asarray(list(classes), dtype=np.int64))

"""Turning what the user gives into a boolean missing-pixel mask.

A mask comes from a mask file (non-zero = missing, or a probability thresholded
with ``--mask-threshold``), or from the image itself: its no-data value, or one
of its bands holding a cloud probability. ``--dilate N`` then grows it by N
pixels to cover cloud edges and halos.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from transforms import qa_masks


@dataclasses.dataclass(frozen=True)
class MaskSpec:
  """How to derive a tile's mask.

  Attributes:
    source: ``file`` (a mask file per image, see the mask template),
      ``nodata`` (pixels equal to the image's no-data value in every band),
      or ``band:K`` (band K, 1-based, of the image is a cloud probability; it
      is removed from the image before restoration).
    threshold: For probability masks (float or integer), values strictly above
      it are missing. None means any non-zero value is missing.
    dilate: Grow the mask by this many pixels (square structuring element).
    nodata: The no-data value to use when the image does not declare one.
    bits: For integer QA masks (file or band): missing where any of these
      bits is set (:mod:`transforms.qa_masks`); replaces ``threshold``.
    values: For class masks (file or band): missing where the value is one
      of these; replaces ``threshold``.
  """

  source: str = "file"
  threshold: Optional[float] = None
  dilate: int = 0
  nodata: Optional[float] = None
  bits: Sequence[int] = ()
  values: Sequence[int] = ()

  def __post_init__(self):
    if not (self.source in ("file", "nodata") or self.source.startswith("band:")):
      raise ValueError(f"mask source must be file, nodata or band:K, got {self.source!r}")
    if self.source.startswith("band:"):
      k = self.source.split(":", 1)[1]
      if not (k.isdigit() and int(k) >= 1):
        raise ValueError(f"mask source band:K needs a 1-based band number K, got {self.source!r}")
    if self.threshold is not None and not math.isfinite(self.threshold):
      raise ValueError(f"--mask-threshold must be a finite number, got {self.threshold}")
    if self.dilate < 0:
      raise ValueError("dilate must be >= 0")
    if self.bits and self.values:
      raise ValueError("give mask bits or mask values, not both")

  @property
  def band(self) -> Optional[int]:
    return int(self.source.split(":", 1)[1]) if self.source.startswith("band:") else None


def read_qa(values: np.ndarray, spec: MaskSpec, threshold: Optional[float]) -> np.ndarray:
  """A mask file's or band's values to bool: QA bits, class values, or a threshold."""
  if spec.bits:
    return qa_masks.bits_set(values, spec.bits)
  if spec.values:
    return qa_masks.values_in(values, spec.values)
  return binarize(values, threshold)


def binarize(values: np.ndarray, threshold: Optional[float]) -> np.ndarray:
  """``[H, W]`` or ``[H, W, C]`` mask values to bool (any channel missing)."""
  if values.ndim == 3:
    values = values.max(axis=2) if threshold is not None else np.any(values != 0, axis=2)
  if values.dtype == bool:
    return values
  if threshold is None:
    return values != 0
  return values > threshold


def nodata_mask(image: np.ndarray, nodata: Optional[float]) -> np.ndarray:
  """Pixels equal to ``nodata`` in every band (NaN matches NaN)."""
  if nodata is None:
    raise ValueError("the image declares no no-data value; pass --nodata")
  if np.isnan(nodata):
    return np.all(np.isnan(image), axis=2)
  return np.all(image == np.asarray(nodata, dtype=image.dtype), axis=2)


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
  if pixels <= 0 or not mask.any():
    return mask
  structure = np.ones((3, 3), dtype=bool)
  return ndimage.binary_dilation(mask, structure=structure, iterations=pixels)


def derive(image: np.ndarray, mask_values: Optional[np.ndarray], profile_nodata: Optional[float],
           spec: MaskSpec) -> np.ndarray:
  """The ``[H, W]`` bool mask (True = missing) of ``image`` per ``spec``.

  A probability band (``band:K``) is read here; which bands are restored
  (without it) is decode's to say (``transforms.decode``).

  Raises:
    ValueError: the spec does not fit this tile (the message says why).
  """
  if spec.source == "file":
    if mask_values is None:
      raise ValueError("no mask given")
    mask = read_qa(mask_values, spec, spec.threshold)
  elif spec.source == "nodata":
    mask = nodata_mask(image, spec.nodata if spec.nodata is not None else profile_nodata)
  else:
    k = spec.band
    if not 1 <= k <= image.shape[2]:
      raise ValueError(f"mask band {k} out of range: the image has {image.shape[2]} bands")
    mask = read_qa(image[:, :, k - 1], spec, spec.threshold if spec.threshold is not None else 0.5)
  return dilate(mask, spec.dilate)

"""The valid footprint, and where the fill abstains.

Pixels outside the footprint (the declared no-data value, ``--nodata V`` even
with file masks, NaN, the zero fill of L1 products) are never read as known,
never filled, and come out exactly as they went in: they are taken out of the
mask here, before any window is cut, and recorded as ``nodata``.

Hole pixels farther than ``--max-fill-distance`` pixels (Euclidean, as GDAL
FillNodata's ``-md``) from known ground are not filled either: they are
recorded as ``unfilled`` and written as the no-data value (or left as they
were when the file has none).

Both work on in-memory tiles and, stripe by stripe, on streamed scenes.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import numpy as np
from scipy import ndimage


@dataclasses.dataclass(frozen=True)
class FootprintSpec:
  """What lies outside the footprint, and how far the fill may reach.

  Attributes:
    nodata: ``--nodata V``: pixels equal to V in every band are no-data, also
      when the mask comes from a file (in addition to the declared value).
    border_only: Only no-data pixels connected to the image border count
      (the zero fill around an L1 scene), so dark ground equal to the value
      inside the scene stays known. Applies to ``nodata`` and the declared value.
    nan_is_nodata: NaN pixels (any band) are no-data; False with
      ``--nan-as-missing`` (then they are holes to fill).
    mask_is_nodata: The mask *is* the no-data value (``--mask-source
      nodata``): no-data pixels are the gaps to fill, not the footprint.
    max_fill_distance: Pixels; hole pixels farther than this from known
      ground stay unfilled. None fills everything.
  """

  nodata: Optional[float] = None
  border_only: bool = False
  nan_is_nodata: bool = True
  mask_is_nodata: bool = False
  max_fill_distance: Optional[float] = None

  def __post_init__(self):
    if self.max_fill_distance is not None and not self.max_fill_distance > 0:
      raise ValueError(f"max_fill_distance must be > 0, got {self.max_fill_distance}")


def nodata_pixels(image: np.ndarray, declared: Optional[float], spec: FootprintSpec) -> Optional[np.ndarray]:
  """``[H, W]`` bool, True = outside the footprint; None when nothing is.

  Args:
    image: ``[H, W, C]`` the bands being restored, in the input dtype.
    declared: The file's declared no-data value, or None.
  """
  h, w = image.shape[:2]
  out = np.zeros((h, w), bool)
  if not spec.mask_is_nodata:
    for v in {x for x in (declared, spec.nodata) if x is not None}:
      if isinstance(v, float) and math.isnan(v):
        continue  # NaN is handled below.
      if image.dtype.kind in "iu":
        info = np.iinfo(image.dtype)
        if not (info.min <= v <= info.max and float(v).is_integer()):
          continue
      out |= np.all(image == np.asarray(v).astype(image.dtype), axis=2)
    if spec.border_only and out.any():
      out = touching_border(out)
  if spec.nan_is_nodata and image.dtype.kind == "f":
    out |= np.isnan(image).any(axis=2)
  return out if out.any() else None


def touching_border(candidates: np.ndarray) -> np.ndarray:
  """The connected components (8-neighbour) of ``candidates`` that touch the border."""
  labels, n = ndimage.label(candidates, structure=np.ones((3, 3), bool))
  if n == 0:
    return candidates
  edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
  keep = np.zeros(n + 1, bool)
  keep[edge] = True
  keep[0] = False
  return keep[labels]


def unfilled_rows(known: Callable[[int, int], np.ndarray], hole: np.ndarray, distance: float, r0: int, r1: int,
                  height: int) -> np.ndarray:
  """Hole pixels of rows ``[r0, r1)`` farther than ``distance`` from known ground.

  Exact: only rows within ``distance`` of the stripe can hold a nearer known
  pixel, so the distance transform runs on the stripe plus that margin.

  Args:
    known: ``known(a, b)`` -> ``[b - a, W]`` bool, known ground of rows ``[a, b)``.
    hole: ``[r1 - r0, W]`` bool, pixels to fill in the stripe.
    distance: Pixels.
  """
  if not hole.any():
    return np.zeros_like(hole)
  m = int(math.ceil(distance)) + 1
  a, b = max(0, r0 - m), min(height, r1 + m)
  k = known(a, b)
  if not k.any():
    return hole.copy()
  d = ndimage.distance_transform_edt(~k)[r0 - a:r1 - a]
  return hole & (d > distance)


def unfilled(known: np.ndarray,
             hole: np.ndarray,
             distance: Optional[float],
             stripe: int = 2048) -> Optional[np.ndarray]:
  """``[H, W]`` bool, holes beyond ``distance`` of ``known``; None when none or no limit."""
  if distance is None:
    return None
  h = hole.shape[0]
  out = np.zeros_like(hole)
  for r0 in range(0, h, stripe):
    r1 = min(h, r0 + stripe)
    out[r0:r1] = unfilled_rows(lambda a, b: known[a:b], hole[r0:r1], distance, r0, r1, h)
  return out if out.any() else None


@dataclasses.dataclass(frozen=True)
class Footprint:
  """The footprint of one tile, as :func:`apply` returns it.

  Attributes:
    mask: ``[H, W]`` bool, the pixels to fill (the input mask less no-data
      and unfilled pixels).
    nodata: ``[H, W]`` bool or None.
    unfilled: ``[H, W]`` bool or None.
  """

  mask: np.ndarray
  nodata: Optional[np.ndarray]
  unfilled: Optional[np.ndarray]

  @property
  def known(self) -> np.ndarray:
    k = ~self.mask
    for extra in (self.nodata, self.unfilled):
      if extra is not None:
        k &= ~extra
    return k


def apply(image: np.ndarray, mask: np.ndarray, declared: Optional[float], spec: FootprintSpec) -> Footprint:
  """The footprint of an in-memory tile (``image`` ``[H, W, C]``, ``mask`` ``[H, W]`` bool)."""
  nodata = nodata_pixels(image, declared, spec)
  hole = mask if nodata is None else mask & ~nodata
  known = ~hole if nodata is None else ~hole & ~nodata
  far = unfilled(known, hole, spec.max_fill_distance)
  if far is not None:
    hole = hole & ~far
  return Footprint(mask=hole, nodata=nodata, unfilled=far)


def provenance(hole: np.ndarray,
               nodata: Optional[np.ndarray],
               unfilled: Optional[np.ndarray],
               guided: Optional[np.ndarray] = None) -> np.ndarray:
  """``[H, W]`` uint8: 0 observed, 1 model, 2 guided, 3 unfilled, 255 no-data."""
  p = np.zeros(hole.shape, np.uint8)
  p[hole] = 1
  if guided is not None:
    p[hole & guided] = 2
  if unfilled is not None:
    p[unfilled] = 3
  if nodata is not None:
    p[nodata] = 255
  return p

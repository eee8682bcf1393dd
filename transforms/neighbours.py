"""Pre-cut tile archives: each tile's context drawn over its neighbours too.

When the inputs are tiles of one grid (same CRS and pixel size, transforms
offset by whole pixels), a cloud that crosses a tile border is filled from
known ground on both sides, so the fill does not break along the border: the
context of each tile (:func:`transforms.context.push_pull`) is computed over
the tile plus a margin read from its neighbours (their pixels and their own
masks and no-data), then cropped back to the tile. Each output still covers
only its own tile.

Local GeoTIFFs only (object-storage tiles are restored on their own).
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import threading
from typing import Optional, Sequence

import numpy as np
from apache_beam.io.filesystems import FileSystems

from transforms import masks as masks_lib
from transforms.context import push_pull
from transforms.raster_open import check_regular
from transforms.raster_io import TIFF_EXTS, decode_raster, gdal_driver, read_bytes, split_ext
from transforms.scaling import to_unit


@dataclasses.dataclass(frozen=True)
class TileHeader:
  """Where a tile lies: its paths, CRS (WKT), affine transform (6 numbers) and size."""

  path: str
  mask_path: Optional[str]
  crs: str
  transform: tuple[float, ...]
  height: int
  width: int


def header(pair) -> Optional[TileHeader]:
  """The header of a local, georeferenced GeoTIFF pair; None otherwise."""
  import rasterio  # pylint: disable=import-outside-toplevel
  if FileSystems.get_scheme(pair.image_path) is not None:
    return None
  if split_ext(pair.image_path)[1].lower() not in TIFF_EXTS:
    return None
  try:
    # A FIFO or a directory would block or fail the open: not a neighbour (decode reports it).
    check_regular(pair.image_path)
    if pair.mask_path:
      check_regular(pair.mask_path)
    with rasterio.open(pair.image_path, driver=gdal_driver(pair.image_path)) as src:
      if src.crs is None:
        return None
      return TileHeader(pair.image_path, pair.mask_path, src.crs.to_wkt(),
                        tuple(src.transform)[:6], src.height, src.width)
  except Exception:  # pylint: disable=broad-except
    return None  # Decode reports it.


def offset(a: TileHeader, b: TileHeader) -> Optional[tuple[int, int]]:
  """``b``'s top-left in ``a``'s pixel grid (rows, cols), when both share one grid."""
  ta, tb = a.transform, b.transform
  if a.crs != b.crs or ta[0] != tb[0] or ta[4] != tb[4] or ta[1] or ta[3] or tb[1] or tb[3]:
    return None
  cols, rows = (tb[2] - ta[2]) / ta[0], (tb[5] - ta[5]) / ta[4]
  if not (math.isfinite(cols) and math.isfinite(rows)):
    return None  # A non-finite corner (a broken header) is on no grid: it must not fail its neighbours.
  if abs(cols - round(cols)) > 1e-6 or abs(rows - round(rows)) > 1e-6:
    return None
  return int(round(rows)), int(round(cols))


def neighbour_offset(me: TileHeader, other: TileHeader) -> Optional[tuple[int, int]]:
  """``other``'s top-left in ``me``'s grid when it can be ``me``'s neighbour, else None.

  Besides sharing the grid (:func:`offset`), a neighbour must not cover all
  of ``me``: such a file is another image of the same place (another date of
  the tile, the scene it was cut from), not a tile beside it, and its
  pixels around ``me`` are not ``me``'s ground. Tiles that overlap in part
  (MGRS-like grids) stay neighbours.
  """
  off = offset(me, other)
  if off is None:
    return None
  oy, ox = off
  if oy <= 0 and ox <= 0 and oy + other.height >= me.height and ox + other.width >= me.width:
    return None
  return off


def within_margin(me: TileHeader, other: TileHeader, margin: int) -> Optional[tuple[tuple[int, int], tuple]]:
  """``(other's corner, (y0, y1, x0, x1))`` when ``other`` is ``me``'s
  neighbour (:func:`neighbour_offset`) with pixels inside ``[-margin, H +
  margin) x [-margin, W + margin)`` of ``me``'s grid (those rows and columns),
  else None."""
  off = neighbour_offset(me, other)
  if off is None:
    return None
  oy, ox = off
  y0, y1 = max(-margin, oy), min(me.height + margin, oy + other.height)
  x0, x1 = max(-margin, ox), min(me.width + margin, ox + other.width)
  if y0 >= y1 or x0 >= x1:
    return None
  return off, (y0, y1, x0, x1)


@dataclasses.dataclass(frozen=True)
class NeighbourSpec:
  """How far into the neighbours a tile's context reaches.

  Attributes:
    margin: Pixels read from neighbouring tiles on each side (0 = off).
    bands: ``--bands`` (1-based) applied to neighbours as to the tile.
    mask: How neighbours' masks are derived (as the tile's).
    nodata: ``--nodata``: no-data of neighbours that declare none.
  """

  margin: int = 256
  bands: Sequence[int] = ()
  mask: masks_lib.MaskSpec = masks_lib.MaskSpec()
  nodata: Optional[float] = None


# Neighbours' whole pixels and masks, kept per process: on a grid every tile
# reads parts of up to 24 neighbours, each of which is itself a tile whose
# neighbours read it again. Only files up to CACHE_ITEM_BYTES decoded are kept,
# CACHE_BYTES in all (least recently used first out); keyed by path, size and
# modification time, so a changed file is read again.
CACHE_BYTES = 64 << 20
CACHE_ITEM_BYTES = 8 << 20
_CACHE: "collections.OrderedDict[tuple, tuple]" = collections.OrderedDict()
_CACHE_LOCK = threading.Lock()
_cache_bytes = 0


def _cached(key: tuple, load):
  """``load()`` (a tuple whose arrays are not modified by callers), kept under ``key``."""
  global _cache_bytes  # pylint: disable=global-statement
  with _CACHE_LOCK:
    if key in _CACHE:
      _CACHE.move_to_end(key)
      return _CACHE[key]
  value = load()
  for a in value:
    if isinstance(a, np.ndarray):
      a.setflags(write=False)  # Shared between tiles: never written.
  size = sum(a.nbytes for a in value if isinstance(a, np.ndarray))
  if size <= CACHE_ITEM_BYTES:
    with _CACHE_LOCK:
      if key not in _CACHE:
        _CACHE[key] = value
        _cache_bytes += size
      while _cache_bytes > CACHE_BYTES and _CACHE:
        _, old = _CACHE.popitem(last=False)
        _cache_bytes -= sum(a.nbytes for a in old if isinstance(a, np.ndarray))
  return value


def _stamp(path: str) -> tuple:
  st = os.stat(path)
  return path, st.st_size, st.st_mtime_ns


def _image(h: TileHeader, spec: NeighbourSpec, bands: int, window) -> Optional[tuple[np.ndarray, Optional[float]]]:
  """(neighbour ``h``'s pixels ``[rows, cols, C]`` in ``window``, its declared
  no-data), or None when its bands do not fit. ``window``: (r0, r1, c0, c1)."""
  import rasterio  # pylint: disable=import-outside-toplevel
  from rasterio.windows import Window as RWindow  # pylint: disable=import-outside-toplevel
  r0, r1, c0, c1 = window

  def read(win):
    with rasterio.open(h.path, driver=gdal_driver(h.path)) as src:
      idx = list(spec.bands) if spec.bands else list(range(1, src.count + 1))
      if len(idx) != bands or max(idx) > src.count:
        return (None, None)
      return np.moveaxis(src.read(indexes=idx, window=win), 0, -1), src.nodata

  if h.height * h.width * bands * 8 > CACHE_ITEM_BYTES:  # A large neighbour: only the part.
    img, declared = read(RWindow(c0, r0, c1 - c0, r1 - r0))
    return None if img is None else (img, declared)
  img, declared = _cached(("image", _stamp(h.path), tuple(spec.bands), bands), lambda: read(None))
  return None if img is None else (img[r0:r1, c0:c1], declared)


def _mask_values(path: str, shape: tuple[int, int]) -> Optional[np.ndarray]:
  """A neighbour's whole mask file, decoded (None when its size is not ``shape``)."""

  def load():
    mvals, _ = decode_raster(read_bytes(path), split_ext(path)[1])
    return (mvals if mvals.shape[:2] == shape else None,)

  return _cached(("mask", _stamp(path)), load)[0]


def _read_part(h: TileHeader, r0: int, r1: int, c0: int, c1: int, spec: NeighbourSpec,
               bands: int) -> Optional[tuple[np.ndarray, np.ndarray]]:
  """Rows/cols of neighbour ``h`` (its own pixel grid): (values, known bool)."""
  part = _image(h, spec, bands, (r0, r1, c0, c1))
  if part is None:
    return None
  img, declared = part
  mvals = None
  if h.mask_path and spec.mask.source == "file":
    mvals = _mask_values(h.mask_path, (h.height, h.width))
    if mvals is None:
      return None
    mvals = mvals[r0:r1, c0:c1]
  if spec.mask.source.startswith("band:"):
    return None
  nodata = declared if declared is not None else spec.nodata
  try:
    mask = masks_lib.derive(img, mvals, nodata, spec.mask)
  except ValueError:
    return None
  known = ~mask
  for v in {x for x in (declared, spec.nodata) if x is not None}:
    if not np.isnan(v):
      known &= ~np.all(img == np.asarray(v).astype(img.dtype), axis=2)
  if img.dtype.kind == "f":
    known &= np.isfinite(img).all(axis=2)
  return img, known


def extended_context(me: TileHeader, others: Sequence[TileHeader], unit: np.ndarray, known: np.ndarray,
                     spec: NeighbourSpec, lo: float, hi: float) -> Optional[np.ndarray]:
  """The tile's context computed over it and a ``margin`` of its neighbours.

  Args:
    me: The tile's header (its size is ``unit``'s first two sides).
    others: Every input's header (the tile's own is skipped).
    unit: ``[H, W, C]`` the tile on the 0…1 scale.
    known: ``[H, W]`` float32 known ground of the tile.
    lo, hi: The 0…1 scaling.

  Returns:
    ``[H, W, C]`` float32, or None when no neighbour touches the margin.
  """
  m = spec.margin
  h, w, c = unit.shape
  big = np.zeros((h + 2 * m, w + 2 * m, c), np.float32)
  wk = np.zeros((h + 2 * m, w + 2 * m), np.float32)
  big[m:m + h, m:m + w], wk[m:m + h, m:m + w] = unit, known
  found = False
  own = np.zeros((h + 2 * m, w + 2 * m), bool)
  own[m:m + h, m:m + w] = True
  # One order on every runner (the headers side input has none of its own, and a
  # multi-process runner changed it from run to run): by path.
  for o in sorted(others, key=lambda t: t.path):
    reach = None if o.path == me.path else within_margin(me, o, m)
    if reach is None:
      continue
    (oy, ox), (y0, y1, x0, x1) = reach
    try:
      part = _read_part(o, y0 - oy, y1 - oy, x0 - ox, x1 - ox, spec, c)
    except Exception:  # pylint: disable=broad-except
      part = None  # A broken neighbour is its own dead letter; this tile goes on without it.
    if part is None:
      continue
    vals, kn = part
    sl = (slice(y0 + m, y1 + m), slice(x0 + m, x1 + m))
    free = ~own[sl]  # Never overwrite the tile's own pixels.
    unit_vals = to_unit(vals, lo, hi)
    prev = wk[sl]
    if free.all() and not prev.any():  # (Tiles of a grid do not overlap: the usual case.)
      big[sl], wk[sl] = unit_vals, kn
    else:
      # Where neighbours overlap, one's known ground is never replaced by another's cloud.
      take = free & ((kn > 0) | (prev <= 0))
      big[sl][take], wk[sl][take] = unit_vals[take], kn[take]
    found = True
  if not found:
    return None
  return push_pull(big, wk, crop=(m, m + h, m, m + w))  # == push_pull(big, wk)[m:m + h, m:m + w]

"""Tiles of one grid share the pyramid of their neighbour context.

:func:`transforms.neighbours.extended_context` computes each tile's context
over the tile plus a margin of its neighbours: with 256-pixel tiles and a
512-pixel margin, a 1280² region whose push-pull pyramid (pooling every
level over the whole region) was most of the work, and each tile was pooled
again inside each of the 25 regions that hold it.

Here each tile's own pyramid (:func:`transforms.context.pyramid` of the tile
alone, read as a neighbour) is kept per process, and a region's levels are
pasted together from its tiles' levels. A pyramid cell depends only on the
four finer cells it pools, so wherever every tile's corner, size and cut in
the region is a multiple of ``2**k``, the region's levels ``1…k`` are exactly
(bit for bit: the same float32 operations on the same values) its tiles'
levels side by side, and 0 where no tile is. Coarser levels are pooled from
level ``k``, and the fill (:func:`transforms.context.pull`) is computed around
the tile only, as before: the result is bit-identical to
:func:`extended_context`, whose reading order and rules it keeps (the tile's
own pixels as given, neighbours read from their files).

A neighbour's levels are kept whole only where a region reads them whole:
the fill reads a fine level only within a few cells of the tile
(:func:`transforms.context.fill_windows`: 3 pixels at level 0, about 11
cells at level 1), so of such a level only a frame along the neighbour's
edges is kept (:class:`_Frame`). A 256² tile's pyramid then takes about
0.22 MB instead of 1.33, and the cache holds the rows of tiles a region spans
on grids several times wider (at 128 MB kept whole, a grid 16 tiles wide
already re-read neighbours: 256 tiles ran at 6.25 tiles/s against 8.39 with
a cache eight times larger).

Where that would not hold, the tile's context is computed as before: tiles
that overlap (random crops), offsets or sizes not multiples of 2, and with
``--dilate``, a margin that cuts through a neighbour (extended_context
dilates the mask of the part it reads, so different tiles see different
masks of that neighbour).
"""

from __future__ import annotations

import collections
import os
import threading
from typing import Optional, Sequence

import numpy as np

from transforms import neighbours
from transforms.context import fill_windows, level_shape, levels_for, pull, pyramid
from transforms.scaling import to_unit

# Tiles' own pyramids (levels 0…k), least recently used first out: ~1.4 MB
# for a 256² tile of 3 bands.
CACHE_BYTES = 128 << 20
_CACHE: "collections.OrderedDict[tuple, tuple]" = collections.OrderedDict()
_LOCK = threading.Lock()
_cache_bytes = 0


def _nbytes(value) -> int:
  return sum(a.nbytes for levels in value for a in levels)


def _level0(vals: np.ndarray, kn: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
  """Level 0 of a neighbour's part, as extended_context pastes and push_pull weighs it."""
  w0 = np.clip(kn.astype(np.float32), 0.0, 1.0)
  return np.where(w0[..., None] > 0, to_unit(vals, lo, hi), 0.0).astype(np.float32, copy=False), w0


class _Frame:
  """The cells of one pyramid level (``[h, w, …]``) within ``ring`` of its
  edges, as four strips (rows along the top and bottom, columns down the
  sides; the corners kept twice). :meth:`cut` returns a block that lies
  inside one strip, bit for bit the level's, and raises ``KeyError`` for any
  other block."""

  def __init__(self, level: np.ndarray, ring: int):
    h, w = level.shape[:2]
    self.shape, self.ring = level.shape, ring
    self._strips = (level[:ring].copy(), level[h - ring:].copy(), level[:, :ring].copy(), level[:, w - ring:].copy())

  @property
  def nbytes(self) -> int:
    return sum(a.nbytes for a in self._strips)

  def cut(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    h, w, r = self.shape[0], self.shape[1], self.ring
    top, bottom, left, right = self._strips
    if y1 <= r:
      return top[y0:y1, x0:x1]
    if y0 >= h - r:
      return bottom[y0 - (h - r):y1 - (h - r), x0:x1]
    if x1 <= r:
      return left[y0:y1, x0:x1]
    if x0 >= w - r:
      return right[y0:y1, x0 - (w - r):x1 - (w - r)]
    raise KeyError((y0, y1, x0, x1))


def _cut(level, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
  """Cells ``[y0:y1, x0:x1]`` of a kept level (an array or a :class:`_Frame`)."""
  return level.cut(y0, y1, x0, x1) if isinstance(level, _Frame) else level[y0:y1, x0:x1]


def _keep(pyr: tuple, rings: Sequence[int]) -> tuple:
  """``pyr`` (``(xs, ws)``) with each level ``lvl`` for which ``rings[lvl]`` is
  a ring much narrower than the level as a :class:`_Frame` of that ring."""
  xs, ws = [], []
  for lvl, (x, w) in enumerate(zip(*pyr)):
    r = rings[lvl] if lvl < len(rings) else None
    if r is not None and 0 < r and 4 * r <= min(x.shape[:2]):
      xs.append(_Frame(x, r))
      ws.append(_Frame(w, r))
    else:
      xs.append(x)
      ws.append(w)
  return xs, ws


def _read_pyramid(o: neighbours.TileHeader, spec, c: int, lo: float, hi: float, k: int) -> Optional[tuple]:
  """``(xs, ws)``, levels 0…k, of neighbour ``o`` alone (whole), or None when it cannot be read."""
  try:
    part = neighbours._read_part(o, 0, o.height, 0, o.width, spec, c)  # pylint: disable=protected-access
  except Exception:  # pylint: disable=broad-except
    part = None  # As extended_context: a broken neighbour is left out.
  if part is None:
    return None
  x0, w0 = _level0(*part, lo, hi)
  return pyramid([x0], [w0], k)


def _tile_pyramid(o: neighbours.TileHeader,
                  spec,
                  c: int,
                  lo: float,
                  hi: float,
                  k: int,
                  rings: Sequence[Optional[int]] = ()) -> Optional[tuple]:
  """``(xs, ws)``, levels 0…k, of neighbour ``o`` alone, as kept (:func:`_keep`
  with ``rings``), or None when it cannot be read."""
  try:
    key = (o.path, o.mask_path, _stamp(o.path), _stamp(o.mask_path), repr(spec), c, lo, hi, k, tuple(rings))
  except OSError:
    return None  # As extended_context: a neighbour it cannot read is left out.
  with _LOCK:
    if key in _CACHE:
      _CACHE.move_to_end(key)
      return _CACHE[key]
  whole = _read_pyramid(o, spec, c, lo, hi, k)
  if whole is None:
    return None  # Not kept: it is read again next time, as extended_context would.
  value = _keep(whole, rings)
  global _cache_bytes  # pylint: disable=global-statement
  with _LOCK:
    if key not in _CACHE:
      _CACHE[key] = value
      _cache_bytes += _nbytes(value)
    while _cache_bytes > CACHE_BYTES and len(_CACHE) > 1:
      _, old = _CACHE.popitem(last=False)
      _cache_bytes -= _nbytes(old)
  return value


def _stamp(path: Optional[str]) -> tuple:
  if not path:
    return ()
  st = os.stat(path)
  return st.st_size, st.st_mtime_ns


def _aligned(numbers: Sequence[int], levels: int) -> int:
  """The largest ``k <= levels`` such that ``2**k`` divides every number."""
  k = 0
  while k < levels and all(n % (2 << k) == 0 for n in numbers):
    k += 1
  return k


def _overlap(a, b) -> bool:
  return max(a[0], b[0]) < min(a[1], b[1]) and max(a[2], b[2]) < min(a[3], b[3])


def shared_context(me: neighbours.TileHeader, others: Sequence[neighbours.TileHeader], unit: np.ndarray,
                   known: np.ndarray, spec: neighbours.NeighbourSpec, lo: float,
                   hi: float) -> tuple[bool, Optional[np.ndarray]]:
  """``(True, context)`` bit-identical to :func:`transforms.neighbours.extended_context`
  (the same arguments) from the tiles' kept pyramids; ``(False, None)`` where
  this tile cannot use them (the caller computes its context as before)."""
  m = spec.margin
  h, w, c = unit.shape
  if h * w * c * 8 > neighbours.CACHE_ITEM_BYTES:
    return False, None  # Large tiles: extended_context reads only their parts, and gains little here.
  hh, ww = h + 2 * m, w + 2 * m
  levels = levels_for((hh, ww))
  mine = (m, m + h, m, m + w)
  parts, numbers = [], [m, h, w]
  for o in sorted(others, key=lambda t: t.path):  # extended_context's order and test.
    reach = None if o.path == me.path else neighbours.within_margin(me, o, m)
    if reach is None:
      continue
    (oy, ox), (y0, y1, x0, x1) = reach
    oy, ox = oy + m, ox + m  # The neighbour's corner in the region.
    rect = (y0 + m, y1 + m, x0 + m, x1 + m)
    if _overlap(rect, mine) or any(_overlap(rect, p[2]) for p in parts):
      return False, None  # Overlapping tiles: extended_context's rules decide pixel by pixel.
    if o.height * o.width * c * 8 > neighbours.CACHE_ITEM_BYTES:
      return False, None  # A large neighbour: extended_context reads only the part it needs.
    if spec.mask.dilate and rect != (oy, oy + o.height, ox, ox + o.width):
      # extended_context dilates the mask of the part it reads: only whole neighbours match.
      return False, None
    parts.append((o, (oy, ox), rect))
    numbers += [oy, ox, o.height, o.width, *rect]
  if not parts:
    return True, None
  k = _aligned(numbers, levels)
  if k < 1:
    return False, None
  shapes = [level_shape((hh, ww), lvl) for lvl in range(levels + 1)]
  crop = (m, m + h, m, m + w)
  win = fill_windows(shapes, crop, levels)
  rings = _rings(win, crop, k)
  pyrs = [_tile_pyramid(o, spec, c, lo, hi, k, rings) for o, _, _ in parts]
  if all(p is None for p in pyrs):
    return True, None  # No neighbour could be read.
  w0 = np.clip(known, 0.0, 1.0)  # The tile's own level 0 as given, as extended_context pastes it.
  mx = pyramid([np.where(w0[..., None] > 0, unit, 0.0).astype(np.float32, copy=False)], [w0], k)
  xs, ws, offsets = [], [], []
  for lvl in range(k + 1):
    # Level k whole (the coarser ones are pooled from it); finer ones only where the fill reads them.
    y0, y1, x0_, x1 = (0, shapes[lvl][0], 0, shapes[lvl][1]) if lvl == k else win[lvl]
    xl = np.zeros((y1 - y0, x1 - x0_, c), np.float32)
    wl = np.zeros((y1 - y0, x1 - x0_), np.float32)
    _paste(xl, wl, (y0, x0_), lvl, mx, (m, m), mine)
    for i, ((o, corner, rect), pyr) in enumerate(zip(parts, pyrs)):
      if pyr is None:
        continue
      try:
        _paste(xl, wl, (y0, x0_), lvl, pyr, corner, rect)
      except KeyError:  # A block outside the kept frame (not expected): the neighbour whole, not kept.
        pyrs[i] = _read_pyramid(o, spec, c, lo, hi, k)
        if pyrs[i] is not None:
          _paste(xl, wl, (y0, x0_), lvl, pyrs[i], corner, rect)
    xs.append(xl)
    ws.append(wl)
    offsets.append((y0, x0_))
  xs, ws = pyramid(xs, ws, levels)
  offsets += [(0, 0)] * (levels - k)
  return True, pull(xs, ws, crop, unit, w0, shapes=shapes, offsets=offsets)


def _rings(win: Sequence[tuple[int, int, int, int]], crop: tuple[int, int, int, int], k: int) -> tuple:
  """Per level below ``k``: how many cells beyond the tile the fill reads
  (``win``, :func:`transforms.context.fill_windows` of ``crop``); None at ``k``
  (read whole, the coarser levels are pooled from it)."""
  out = []
  for lvl in range(k + 1):
    if lvl == k:
      out.append(None)
      continue
    s = 1 << lvl
    y0, y1, x0, x1 = win[lvl]
    out.append(max(0, crop[0] // s - y0, y1 - crop[1] // s, crop[2] // s - x0, x1 - crop[3] // s))
  return tuple(out)


def _paste(xl, wl, origin, lvl, pyr, corner, rect) -> None:
  """Pastes level ``lvl`` of a tile's pyramid (``pyr``: (xs, ws), its corner at
  ``corner``), cut to ``rect`` (region pixels), into ``xl``/``wl`` (cells from ``origin``)."""
  s = 1 << lvl
  y0, y1, x0, x1 = rect[0] // s, rect[1] // s, rect[2] // s, rect[3] // s
  oy, ox = origin
  hh, ww = xl.shape[:2]
  a0, a1, b0, b1 = max(y0, oy), min(y1, oy + hh), max(x0, ox), min(x1, ox + ww)
  if a0 >= a1 or b0 >= b1:
    return
  cy, cx = corner[0] // s, corner[1] // s
  block = (a0 - cy, a1 - cy, b0 - cx, b1 - cx)
  xl[a0 - oy:a1 - oy, b0 - ox:b1 - ox] = _cut(pyr[0][lvl], *block)
  wl[a0 - oy:a1 - oy, b0 - ox:b1 - ox] = _cut(pyr[1][lvl], *block)

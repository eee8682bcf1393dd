"""A tile's possible neighbours, found without looking at every input.

Every prepared tile receives the headers of all inputs (the ``Headers`` side
input, :mod:`transforms.prepare`), but its context reads only tiles of its own
grid within ``margin`` pixels (:func:`transforms.neighbours.neighbour_offset`).
Scanning and sorting every header for every tile costs O(inputs) a tile,
O(inputs²) a run: 0.4 ms a tile at 256 inputs, 22 ms at 16,384, 95 ms at
65,536, close to the model's own time (``python -m benchmarks.neighbour_lookup``,
2-core Xeon; with the index 0.1–0.25 ms, after one build of 0.5 s at 65,536).

:class:`HeaderIndex` buckets the headers once per process: by grid (CRS and
pixel size, no rotation: the only headers :func:`transforms.neighbours.offset`
can pair) and by cells of that grid as wide as its median tile. For a tile it
returns a superset of the headers that can be its neighbours within a margin,
in the order the context reads them (by path, then input order), so the
context reads the same neighbours in the same order as from the whole list.
"""

from __future__ import annotations

import math
import threading
from typing import Optional, Sequence

from transforms.neighbours import TileHeader

# A spatial cell's side, in pixels of its grid: the grid's median tile side, at least this.
MIN_CELL = 64
# A header spanning more cells than this (a whole scene among tiles) is kept
# in its grid's list of wide headers, a candidate for every tile of the grid.
MAX_CELLS = 256


def _grid_key(h: TileHeader) -> Optional[tuple]:
  """The grid ``h`` lies on, or None if it has a rotation (then it pairs with nothing)."""
  t = h.transform
  if t[1] or t[3] or not t[0] or not t[4]:
    return None
  return h.crs, t[0], t[4]


def _span(start: float, length: float, cell: int, pad: int) -> Optional[tuple[int, int]]:
  """The cells (first, last) that pixels ``[start, start + length]`` touch, ``pad`` more on each side."""
  if not (math.isfinite(start) and math.isfinite(length)):
    return None
  return math.floor(start / cell) - pad, math.floor((start + length) / cell) + pad


class HeaderIndex:
  """The headers of a run, looked up by path and by place."""

  def __init__(self, headers: Sequence[TileHeader]):
    self.headers = headers
    self._by_path: dict[str, TileHeader] = {}
    grids: dict[tuple, list[int]] = {}
    for i, h in enumerate(headers):
      self._by_path.setdefault(h.path, h)  # The first of a path, as a scan of the list finds it.
      key = _grid_key(h)
      if key is not None:
        grids.setdefault(key, []).append(i)
    self._cells: dict[tuple, dict[tuple[int, int], list[int]]] = {}
    self._wide: dict[tuple, list[int]] = {}
    self._origin: dict[tuple, tuple[float, float]] = {}
    self._cell: dict[tuple, int] = {}
    for key, members in grids.items():
      sides = sorted(max(headers[i].height, headers[i].width) for i in members)
      self._cell[key] = max(MIN_CELL, sides[len(sides) // 2])
      self._origin[key] = (headers[members[0]].transform[2], headers[members[0]].transform[5])
      cells = self._cells.setdefault(key, {})
      for i in members:
        box = self._box(key, headers[i], 0, pad=0)
        if box is None or (box[1] - box[0] + 1) * (box[3] - box[2] + 1) > MAX_CELLS:
          self._wide.setdefault(key, []).append(i)
          continue
        for r in range(box[0], box[1] + 1):
          for c in range(box[2], box[3] + 1):
            cells.setdefault((r, c), []).append(i)

  def _box(self, key: tuple, h: TileHeader, margin: int, pad: int) -> Optional[tuple[int, int, int, int]]:
    """(first row, last row, first col, last col) of the cells that ``h``
    grown by ``margin`` pixels touches, ``pad`` more on each side (rounding)."""
    x0, y0 = self._origin[key]
    cell = self._cell[key]
    col, row = (h.transform[2] - x0) / h.transform[0], (h.transform[5] - y0) / h.transform[4]
    rows = _span(row - margin, h.height + 2 * margin, cell, pad)
    cols = _span(col - margin, h.width + 2 * margin, cell, pad)
    if rows is None or cols is None:
      return None
    return rows + cols

  def find(self, path: str) -> Optional[TileHeader]:
    """The first header of ``path``, None if there is none."""
    return self._by_path.get(path)

  def candidates(self, me: TileHeader, margin: int) -> list[TileHeader]:
    """The headers that can be ``me``'s neighbours within ``margin`` pixels
    (a superset, ``me`` among them), sorted by path, ties in input order."""
    key = _grid_key(me)
    if key is None or key not in self._origin:
      return []
    found = set(self._wide.get(key, ()))
    box = self._box(key, me, margin, pad=1)
    cells = self._cells.get(key, {})
    if box is None or (box[1] - box[0] + 1) * (box[3] - box[2] + 1) > len(cells):
      for members in cells.values():  # A huge tile or margin: every cell of its grid.
        found.update(members)
    else:
      for r in range(box[0], box[1] + 1):
        for c in range(box[2], box[3] + 1):
          found.update(cells.get((r, c), ()))
    return [self.headers[i] for i in sorted(found, key=lambda i: (self.headers[i].path, i))]


_LOCK = threading.Lock()
_LAST: list = []  # [(headers, index)]: the side input's list, held so its id is not reused.


def index_for(headers: Sequence[TileHeader]) -> HeaderIndex:
  """The index of ``headers``, built once for each list a process is given."""
  with _LOCK:
    for held, index in _LAST:
      if held is headers:
        return index
  index = HeaderIndex(headers)
  with _LOCK:
    _LAST[:] = [(headers, index)] + _LAST[:1]
  return index

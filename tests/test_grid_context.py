"""Tiles of one grid share their neighbour context's pyramid (issue 13, speed).

:func:`transforms.grid_context.shared_context` pastes a region's pyramid
together from its tiles' own pyramids; it must give bit for bit what
:func:`transforms.neighbours.extended_context` computes over the region
(and decline, so that the caller computes it, where it cannot).
"""

import os

import numpy as np
import pytest
import rasterio

from tests.helpers import cloud_mask, write_geotiff, write_png
from transforms import grid_context
from transforms import neighbours as nb
from transforms.masks import MaskSpec
from transforms.scaling import to_unit


def _grid(folder, rows, cols, size, seed=0, dtype=np.uint16, gaps=(), nodata=None):
  """Headers of a ``rows`` x ``cols`` grid of ``size`` tiles (``gaps``: (r, c) left out)."""
  rng = np.random.default_rng(seed)
  out = []
  for r in range(rows):
    for c in range(cols):
      if (r, c) in gaps:
        continue
      values = rng.integers(1000, 30000, (size, size, 3)).astype(dtype)
      if nodata is not None:
        values[:5, :7] = nodata
      name = f"t_r{r}_c{c}"
      path = write_geotiff(os.path.join(folder, name + ".tif"),
                           values,
                           crs="EPSG:32633",
                           transform=(30.0, 0.0, 500000.0 + 30 * size * c, 0.0, -30.0, 4000000.0 - 30 * size * r),
                           nodata=nodata)
      cloud = cloud_mask(size, size, seed=seed * 1000 + r * cols + c, coverage=0.3)
      mask_path = write_png(os.path.join(folder, name + "_mask.png"), cloud.astype(np.uint8) * 255)
      with rasterio.open(path) as src:
        out.append(nb.TileHeader(path, mask_path, src.crs.to_wkt(), tuple(src.transform)[:6], size, size))
  return out


def _check(headers, spec, expect_shared=True, mes=None):
  lo, hi = 0.0, 65535.0
  grid_context._CACHE.clear()  # pylint: disable=protected-access
  shared = 0
  mes = headers if mes is None else mes
  for me in mes:
    img, kn = nb._read_part(me, 0, me.height, 0, me.width, spec, 3)  # pylint: disable=protected-access
    unit = to_unit(img, lo, hi)
    known = kn.astype(np.float32)
    known[::7, ::5] = 0.0  # The tile's own known ground is its own (the footprint's), not its file's.
    want = nb.extended_context(me, headers, unit, known, spec, lo, hi)
    ok, got = grid_context.shared_context(me, headers, unit, known, spec, lo, hi)
    if not ok:
      continue
    shared += 1
    assert (got is None) == (want is None), me.path
    if want is not None:
      assert got.dtype == want.dtype and got.shape == want.shape
      assert got.tobytes() == want.tobytes(), (me.path, float(np.abs(got - want).max()))
  assert shared == (len(mes) if expect_shared else 0)


@pytest.mark.parametrize("size,margin", [(64, 128), (64, 96), (48, 40), (64, 30)])
def test_shared_context_is_bit_identical_on_a_grid(tmp_path, size, margin):
  # Margins of whole tiles, of part tiles, and of odd multiples of 2 (one shared level).
  headers = _grid(tmp_path, 4, 5, size, gaps={(1, 2), (3, 0)})
  _check(headers, nb.NeighbourSpec(margin=margin, mask=MaskSpec(source="file")))


def test_shared_context_with_nodata_and_a_broken_neighbour(tmp_path):
  headers = _grid(tmp_path, 3, 3, 64, seed=1, nodata=0)
  with open(headers[4].mask_path, "wb") as f:  # The centre's mask is not a raster any more.
    f.write(b"not a png")
  others = [h for h in headers if h is not headers[4]]  # Each reads the broken one as a neighbour and skips it.
  _check(headers, nb.NeighbourSpec(margin=64, mask=MaskSpec(source="file"), nodata=0), mes=others)
  _check(headers, nb.NeighbourSpec(margin=64, mask=MaskSpec(source="file")), mes=others)


def test_a_neighbour_whose_files_went_missing_is_left_out_as_by_extended_context(tmp_path):
  headers = _grid(tmp_path, 3, 3, 64, seed=3)
  os.remove(headers[1].mask_path)
  os.remove(headers[5].path)
  _check(headers,
         nb.NeighbourSpec(margin=64, mask=MaskSpec(source="file")),
         mes=[h for i, h in enumerate(headers) if i not in (1, 5)])


def test_dilated_masks_are_shared_only_where_whole_neighbours_are_read(tmp_path):
  headers = _grid(tmp_path, 3, 3, 64, seed=2)
  # A margin of whole tiles: every neighbour is read whole, dilated as a whole.
  _check(headers, nb.NeighbourSpec(margin=64, mask=MaskSpec(source="file", dilate=2)))
  # A margin that cuts neighbours: extended_context dilates each cut part on its own.
  _check(headers, nb.NeighbourSpec(margin=32, mask=MaskSpec(source="file", dilate=2)), expect_shared=False)


def test_overlapping_tiles_are_left_to_extended_context(tmp_path):
  headers = _grid(tmp_path, 2, 2, 64)
  shifted = nb.TileHeader(headers[0].path, headers[0].mask_path, headers[0].crs,
                          (30.0, 0.0, headers[0].transform[2] + 30 * 32, 0.0, -30.0, headers[0].transform[5]), 64, 64)
  me = headers[1]
  unit = np.zeros((64, 64, 3), np.float32)
  ok, _ = grid_context.shared_context(me, [me, shifted], unit, np.ones((64, 64), np.float32),
                                      nb.NeighbourSpec(margin=64, mask=MaskSpec(source="file")), 0.0, 65535.0)
  assert not ok  # It overlaps the tile.


def test_fine_levels_are_kept_as_frames_and_read_only_inside_them(tmp_path, monkeypatch):
  """Neighbours' fine levels are kept as frames along their edges: bit-identical, each file read once, a fraction of the bytes."""
  headers = _grid(tmp_path, 3, 4, 128, seed=4)
  reads = []
  real = grid_context._read_pyramid  # pylint: disable=protected-access
  monkeypatch.setattr(grid_context, "_read_pyramid", lambda o, *a: reads.append(o.path) or real(o, *a))
  _check(headers, nb.NeighbourSpec(margin=256, mask=MaskSpec(source="file")))
  assert sorted(reads) == sorted(
      h.path for h in headers), "a neighbour was read twice: some block fell outside its frame"
  kept = list(grid_context._CACHE.values())  # pylint: disable=protected-access
  assert kept and all(isinstance(v[0][0], grid_context._Frame) for v in kept)  # pylint: disable=protected-access
  whole = sum(
      a.nbytes
      for a in real(headers[0], nb.NeighbourSpec(margin=256, mask=MaskSpec(source="file")), 3, 0.0, 65535.0, 7)[0])
  assert grid_context._nbytes(kept[0]) < 0.4 * whole * 4 / 3, (grid_context._nbytes(kept[0]), whole)  # pylint: disable=protected-access


def test_a_block_outside_a_frame_falls_back_to_the_whole_neighbour(tmp_path, monkeypatch):
  """Frames too narrow for what the fill reads (forced here): still bit-identical, from neighbours read whole."""
  headers = _grid(tmp_path, 3, 3, 64, seed=6)
  monkeypatch.setattr(grid_context, "_rings", lambda win, crop, k: tuple([1] * k + [None]))
  _check(headers, nb.NeighbourSpec(margin=64, mask=MaskSpec(source="file")))

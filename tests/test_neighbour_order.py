"""Overlapping neighbours of a pre-cut tile: one context whatever order the runner gives them.

Real GeoTIFFs and PNG masks on one grid. The headers side input has no order
of its own (a multi-process runner changed it from run to run, and the
restored pixels with it, by up to 2,186 DN); the context now reads neighbours
in path order, and one neighbour's known ground is never replaced by
another's cloud where they overlap.
"""

import os

import numpy as np
import rasterio

from tests.helpers import write_geotiff, write_png
from transforms import neighbours as nb
from transforms.masks import MaskSpec


def _tile(folder, name, x0, values, cloud):
  path = write_geotiff(os.path.join(folder, name + ".tif"),
                       values,
                       crs="EPSG:32633",
                       transform=(30.0, 0.0, 500000.0 + 30 * x0, 0.0, -30.0, 4000000.0))
  mask_path = write_png(os.path.join(folder, name + "_mask.png"), cloud.astype(np.uint8) * 255)
  with rasterio.open(path) as src:
    return nb.TileHeader(path, mask_path, src.crs.to_wkt(), tuple(src.transform)[:6], *values.shape[:2])


def test_overlapping_neighbours_give_one_context_in_any_order(tmp_path):
  rng = np.random.default_rng(0)
  h = w = 64
  me = _tile(tmp_path, "a_me", 0, np.full((h, w, 3), 1000, np.uint16), np.zeros((h, w), bool))
  # Two neighbours to the right, overlapping each other over 32 columns: one clear
  # (bright), one entirely under cloud (dark values nobody may read as known).
  clear = _tile(tmp_path, "b_clear", 64, np.full((h, w, 3), 30000, np.uint16), np.zeros((h, w), bool))
  cloudy = _tile(tmp_path, "c_cloudy", 32, rng.integers(0, 100, (h, w, 3)).astype(np.uint16), np.ones((h, w), bool))
  unit = np.full((h, w, 3), 1000 / 65535, np.float32)
  known = np.ones((h, w), np.float32)
  known[:, 40:] = 0.0  # The tile's own cloud touches its right edge.
  spec = nb.NeighbourSpec(margin=64, mask=MaskSpec(source="file"))
  a = nb.extended_context(me, [clear, cloudy], unit, known, spec, 0.0, 65535.0)
  b = nb.extended_context(me, [cloudy, clear], unit, known, spec, 0.0, 65535.0)
  only_clear = nb.extended_context(me, [clear], unit, known, spec, 0.0, 65535.0)
  np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(a, only_clear)  # The cloudy one adds nothing known.
  # And the clear neighbour's brightness reaches into the hole: it was read.
  assert a[:, 63].mean() > 0.2 and a[:, 0].mean() < 0.05


def test_a_file_covering_the_tile_is_not_its_neighbour(tmp_path):
  """Another date of the same tile, or the scene it was cut from, shares the
  grid but is not a tile beside it: its pixels around the tile are not read
  (a constant tile was filled with a third less than its value from one)."""
  h = w = 16
  me = _tile(tmp_path, "a_me", 0, np.full((h, w, 3), 500, np.uint16), np.zeros((h, w), bool))
  same = _tile(tmp_path, "b_date2", 0, np.full((h, w, 3), 9000, np.uint16), np.zeros((h, w), bool))
  scene = _tile(tmp_path, "c_scene", -8, np.full((40, 40, 3), 20000, np.uint16), np.zeros((40, 40), bool))
  beside = _tile(tmp_path, "d_beside", 16, np.full((h, w, 3), 30000, np.uint16), np.zeros((h, w), bool))
  assert nb.neighbour_offset(me, same) is None and nb.neighbour_offset(me, scene) is None
  assert nb.neighbour_offset(me, beside) == (0, 16)
  unit = np.full((h, w, 3), 500 / 65535, np.float32)
  known = np.ones((h, w), np.float32)
  known[4:12, 4:12] = 0.0
  spec = nb.NeighbourSpec(margin=16, mask=MaskSpec(source="file"))
  assert nb.extended_context(me, [same, scene], unit, known, spec, 0.0, 65535.0) is None  # The tile's own then.
  with_beside = nb.extended_context(me, [same, scene, beside], unit, known, spec, 0.0, 65535.0)
  np.testing.assert_array_equal(with_beside, nb.extended_context(me, [beside], unit, known, spec, 0.0, 65535.0))

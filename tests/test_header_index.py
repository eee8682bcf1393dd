"""transforms.header_index: a tile's candidates hold every neighbour a scan of all inputs finds, in its order."""

from __future__ import annotations

import random

import pytest

from transforms import header_index
from transforms.header_index import HeaderIndex, index_for
from transforms.neighbours import TileHeader, within_margin


def _reads(me: TileHeader, others, margin: int) -> list[TileHeader]:
  """The neighbours the context reads, in its order (transforms.neighbours.extended_context's loop)."""
  return [o for o in sorted(others, key=lambda t: t.path) if o.path != me.path and within_margin(me, o, margin)]


def _headers(rng: random.Random) -> list[TileHeader]:
  """Tiles of two grids, overlapping tiles, a scene over many tiles, off-grid and rotated
  ones, one with a non-finite transform, and a path given twice."""
  out = []
  for crs, px, n in (("EPSG:32633", 30.0, 9), ("EPSG:32634", 10.0, 5)):
    for r in range(n):
      for c in range(n):
        size = rng.choice((256, 256, 300, 1000))
        x, y = 500000.0 + c * 256 * px, 4000000.0 - r * 256 * px
        out.append(TileHeader(f"/g/{crs[-2:]}_{r}_{c}.tif", None, crs, (px, 0.0, x, 0.0, -px, y), size, size))
  out.append(TileHeader("/g/scene.tif", None, "EPSG:32633", (30.0, 0.0, 500000.0, 0.0, -30.0, 4000000.0), 40000, 40000))
  out.append(TileHeader("/g/offgrid.tif", None, "EPSG:32633", (30.0, 0.0, 500000.5, 0.0, -30.0, 4000000.0), 256, 256))
  out.append(TileHeader("/g/rotated.tif", None, "EPSG:32633", (30.0, 1.0, 500000.0, 1.0, -30.0, 4000000.0), 256, 256))
  out.append(TileHeader("/g/nan.tif", None, "EPSG:32633", (30.0, 0.0, float("nan"), 0.0, -30.0, 4000000.0), 256, 256))
  out.append(out[rng.randrange(len(out))])  # The same header twice.
  twin = out[rng.randrange(len(out) - 1)]
  out.append(TileHeader(twin.path, "/m/other.png", twin.crs, twin.transform, twin.height, twin.width))
  for _ in range(60):  # Tiles anywhere on the first grid, overlapping the others.
    x, y = 500000.0 + rng.randrange(-300, 3000) * 30.0, 4000000.0 - rng.randrange(-300, 3000) * 30.0
    out.append(TileHeader(f"/r/{rng.random()}.tif", None, "EPSG:32633", (30.0, 0.0, x, 0.0, -30.0, y), 256, 256))
  rng.shuffle(out)
  return out


@pytest.mark.parametrize("seed", range(6))
def test_candidates_hold_every_neighbour_a_full_scan_reads_in_the_same_order(seed):
  rng = random.Random(seed)
  headers = _headers(rng)
  index = HeaderIndex(headers)
  for me in headers:
    for margin in (0, 1, 256, 512, 5000):
      got = index.candidates(me, margin)
      assert _reads(me, got, margin) == _reads(me, headers, margin), (me.path, margin)


def test_on_a_wide_grid_a_tile_is_offered_its_surroundings_not_every_input():
  tiles = [
      TileHeader(f"/t/{r}_{c}.tif", None, "EPSG:32633", (30.0, 0.0, 5e5 + c * 7680.0, 0.0, -30.0, 4e6 - r * 7680.0),
                 256, 256) for r in range(40) for c in range(40)
  ]
  index = HeaderIndex(tiles)
  me = tiles[20 * 40 + 20]
  got = index.candidates(me, 512)
  assert _reads(me, got, 512) == _reads(me, tiles, 512) and len(_reads(me, tiles, 512)) == 24
  assert len(got) <= 100  # At most the cells around it: 1,600 inputs in all.


def test_find_returns_the_first_header_of_a_path_as_a_scan_does():
  a = TileHeader("/t/a.tif", "/m/1.png", "EPSG:4326", (1.0, 0.0, 0.0, 0.0, -1.0, 0.0), 4, 4)
  b = TileHeader("/t/a.tif", "/m/2.png", "EPSG:4326", (1.0, 0.0, 4.0, 0.0, -1.0, 0.0), 4, 4)
  index = HeaderIndex([a, b])
  assert index.find("/t/a.tif") is a and index.find("/t/none.tif") is None


def test_a_tile_far_from_the_others_gets_no_candidate_but_itself_and_wide_ones():
  tiles = [
      TileHeader(f"/t/{i}.tif", None, "EPSG:3857", (10.0, 0.0, i * 1e6, 0.0, -10.0, 0.0), 256, 256) for i in range(50)
  ]
  scene = TileHeader("/t/scene.tif", None, "EPSG:3857", (10.0, 0.0, 0.0, 0.0, -10.0, 0.0), 100000, 100000)
  index = HeaderIndex(tiles + [scene])
  assert index.candidates(tiles[7], 512) == sorted([tiles[7], scene], key=lambda t: t.path)


def test_the_index_is_built_once_for_each_list():
  a = [TileHeader("/t/a.tif", None, "EPSG:4326", (1.0, 0.0, 0.0, 0.0, -1.0, 0.0), 4, 4)]
  b = list(a)
  assert index_for(a) is index_for(a)
  assert index_for(b) is not index_for(a)
  assert header_index.index_for(b).headers is b

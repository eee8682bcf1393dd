"""Windowing: grid, feathering, padding, skipping clear windows."""

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to

from transforms.records import Tile, TilePair
from transforms.window import CutWindows, WindowSpec, cut, feather, positions, to_unit


def _tile(h, w, mask, c=3, dtype=np.uint16):
  rng = np.random.default_rng(0)
  img = rng.integers(1000, 20000, (h, w, c)).astype(dtype)
  return Tile(pair=TilePair("x.tif", "x", None),
              image=img,
              mask=mask,
              profile={
                  "dtype": str(img.dtype),
                  "nodata": None
              })


@pytest.mark.parametrize("length,size,stride", [(600, 256, 224), (256, 256, 224), (1000, 64, 56), (57, 64, 56)])
def test_positions_cover_every_pixel_and_stay_inside(length, size, stride):
  starts = positions(length, size, stride)
  covered = np.zeros(length, bool)
  for s in starts:
    covered[s:s + size] = True
    assert s >= 0
    assert s + size <= max(length, size)
  assert covered.all()
  assert starts == sorted(set(starts))


def test_feather_is_positive_and_flat_inside():
  w = feather(64, 8)
  assert w.min() > 0
  assert w[32, 32] == 1.0
  assert w[0, 0] < w[4, 4] < w[9, 9]


def test_only_windows_with_holes_are_cut():
  mask = np.zeros((300, 300), bool)
  mask[10:20, 10:20] = True  # Only the top-left windows see it.
  wins = list(cut(_tile(300, 300, mask), WindowSpec(size=64, overlap=8)))
  assert {(w.y, w.x) for w in wins} == {(0, 0)}
  assert wins[0].image.shape == (64, 64, 3) and wins[0].mask.shape == (64, 64, 1)
  assert wins[0].mask.sum() == 100


def test_small_tile_is_padded_by_reflection():
  mask = np.zeros((20, 30), bool)
  mask[5, 5] = True
  tile = _tile(20, 30, mask)
  (win,) = cut(tile, WindowSpec(size=64, overlap=8))
  assert win.image.shape == (64, 64, 3)
  unit = to_unit(tile.image, 0, 65535)
  np.testing.assert_array_equal(win.image[:20, :30], unit)
  np.testing.assert_array_equal(win.image[20, :30], unit[18])  # Reflected, not zero.


def test_one_pixel_tile_is_padded():
  tile = _tile(1, 1, np.ones((1, 1), bool))
  (win,) = cut(tile, WindowSpec(size=64, overlap=8))
  assert win.image.shape == (64, 64, 3)
  assert np.all(win.image == win.image[0, 0])


def test_cut_windows_transform(pipeline):
  mask = np.zeros((128, 128), bool)
  mask[60:70, :] = True  # A stripe through every window: all three rows see it.
  out = (pipeline | beam.Create([_tile(128, 128, mask)]) | beam.ParDo(CutWindows(WindowSpec(size=64, overlap=16), "")) |
         beam.Map(lambda w: (w.tile_key, w.y, w.x, w.tile_shape)))
  assert_that(out,
              equal_to([("x.tif", y, x, (128, 128)) for y in (0, 48, 64) for x in (0, 48, 64)]),
              label="windows with holes")


def test_clear_rows_of_windows_are_skipped(pipeline):
  mask = np.zeros((128, 128), bool)
  mask[2:6, :] = True  # Only the first row of windows.
  out = (pipeline | beam.Create([_tile(128, 128, mask)]) | beam.ParDo(CutWindows(WindowSpec(size=64, overlap=16), "")) |
         beam.Map(lambda w: (w.y, w.x)))
  assert_that(out, equal_to([(0, 0), (0, 48), (0, 64)]), label="first row only")


def test_a_tile_of_one_window_travels_inside_it_and_others_go_to_the_join(monkeypatch):
  """CutWindows' three outputs: a one-window tile inside its window; a larger or
  clear tile keyed to the join; a tile whose cut fails to the join and to
  ``failed`` (so it still ends as a dead letter)."""
  from transforms import window as window_mod
  spec = WindowSpec(size=64, overlap=16)
  mask = np.zeros((64, 64), bool)
  mask[10:20, 10:20] = True
  small = _tile(64, 64, mask)
  (win,) = list(CutWindows(spec, "").process(small))
  assert isinstance(win, window_mod.Window) and win.tile is not None and win.tile.key == small.key
  big_mask = np.zeros((128, 128), bool)
  big_mask[60:70, :] = True
  outs = list(CutWindows(spec, "").process(_tile(128, 128, big_mask)))
  tagged = [o for o in outs if isinstance(o, beam.pvalue.TaggedOutput)]
  assert [(o.tag, o.value[0]) for o in tagged] == [(window_mod.TILES, "x.tif")]
  assert len(outs) - len(tagged) == 9 and all(o.tile is None for o in outs if o not in tagged)
  clear = list(CutWindows(spec, "").process(_tile(64, 64, np.zeros((64, 64), bool))))
  assert [o.tag for o in clear] == [window_mod.TILES]  # No window: composited unchanged after the join.

  def broken(*_a, **_k):
    yield from ()
    raise OSError("disk went away")

  monkeypatch.setattr(window_mod, "cut", broken)
  outs = list(CutWindows(spec, "").process(small))
  assert [o.tag for o in outs] == [window_mod.TILES, window_mod.FAILED_WINDOWS]
  assert "disk went away" in outs[1].value[1].reason and outs[1].value[1].stage == "window"

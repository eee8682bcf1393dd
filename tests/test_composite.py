"""Compositing: known pixels untouched, blending, dtype handling."""

import apache_beam as beam
import numpy as np
from apache_beam.testing.util import assert_that, equal_to

from transforms.composite import CompositeTiles, composite, sparsify, to_dtype
from transforms.records import Tile, TilePair
from transforms.window import WindowSpec, cut


def _restore_all(tile, spec, value=0.5):
  out = []
  for w in cut(tile, spec):
    w.restored = np.full_like(w.image, value)
    out.append(sparsify(w, spec.overlap))
  return out


def _tile(h, w, mask, dtype=np.uint16, c=3):
  rng = np.random.default_rng(1)
  info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
  hi = 30000 if info is None or info.max > 30000 else info.max
  img = rng.integers(0, hi, (h, w, c)).astype(dtype)
  return Tile(pair=TilePair("t.tif", "t", None),
              image=img,
              mask=mask,
              profile={
                  "dtype": str(img.dtype),
                  "nodata": None
              })


def test_known_pixels_are_bit_identical_and_holes_filled():
  mask = np.zeros((200, 170), bool)
  mask[30:150, 40:90] = True
  tile = _tile(200, 170, mask)
  spec = WindowSpec(size=64, overlap=16)
  out = composite(tile.image, mask, _restore_all(tile, spec, 0.25))
  assert out.dtype == tile.image.dtype
  np.testing.assert_array_equal(out[~mask], tile.image[~mask])
  assert np.all(out[mask] == round(0.25 * 65535))


def test_overlapping_windows_blend_to_weighted_mean():
  mask = np.ones((100, 100), bool)
  mask[0, 0] = False
  tile = _tile(100, 100, mask, dtype=np.uint8)
  spec = WindowSpec(size=64, overlap=28)
  results = []
  for w in cut(tile, spec):  # Left windows say 0.2, right ones 0.6.
    w.restored = np.full_like(w.image, 0.2 if w.x == 0 else 0.6)
    results.append(sparsify(w, spec.overlap))
  out = composite(tile.image, mask, results)[:, :, 0].astype(float)
  row = out[50]
  assert row[5] == round(0.2 * 255) and row[95] == round(0.6 * 255)
  inner = row[36:64]  # The overlap ramps monotonically from one to the other.
  assert np.all(np.diff(inner) >= 0) and inner[0] < inner[-1]


def test_to_dtype_clips_rounds_and_avoids_nodata():
  vals = np.array([[-0.1], [0.0], [0.5], [1.2]], np.float32)
  out = to_dtype(vals, "uint8", (0.0, 255.0), nodata=0)
  assert out.ravel().tolist() == [1, 1, 128, 255]
  f = to_dtype(np.array([[0.25]], np.float32), "float32", (0.0, 1.0))
  assert f.dtype == np.float32 and f[0, 0] == np.float32(0.25)


def test_composite_transform(pipeline):
  mask = np.zeros((64, 64), bool)
  mask[10:20, 10:20] = True
  tile = _tile(64, 64, mask)
  spec = WindowSpec(size=64, overlap=8)
  results = _restore_all(tile, spec, 0.5)
  out = (pipeline | beam.Create([("t", {
      "tile": [tile],
      "windows": results
  })]) | beam.ParDo(CompositeTiles()).with_outputs("dead", main="tiles"))
  assert_that(out.tiles | beam.Map(lambda r: (r.tile.key, int(r.restored[15, 15, 0]), r.windows,
                                              bool(np.array_equal(r.restored[~mask], tile.image[~mask])))),
              equal_to([("t.tif", 32768, 1, True)]),
              label="composited")
  assert_that(out.dead, equal_to([]), label="no dead letters")


def test_windows_without_their_tile_are_reported_not_silently_dropped(caplog):
  """A join group with windows but no tile yields nothing here (the summary
  dead-letters the input as lost) and says so in the log, with the key."""
  mask = np.zeros((64, 64), bool)
  mask[10:20, 10:20] = True
  results = _restore_all(_tile(64, 64, mask), WindowSpec(size=64, overlap=8), 0.5)
  with caplog.at_level("ERROR", logger="transforms.composite"):
    out = list(CompositeTiles().process(("orphan", {"tile": [], "windows": results})))
  assert out == []
  assert "orphan: 1 restored window(s) arrived without their tile" in caplog.text

"""The footprint, the fill limit, window context crops and the legacy blend (no Beam run)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from transforms import footprint
from transforms.composite import legacy_blend
from transforms.records import Tile, TilePair
from transforms.window import WindowSpec, cut, tile_context


def test_declared_and_flag_nodata_with_border_only():
  img = np.full((40, 50, 3), 100, np.uint16)
  img[:10, :10] = 0  # zero fill touching the border
  img[20:25, 20:25] = 0  # dark ground inside the scene
  spec = footprint.FootprintSpec(nodata=0)
  nd = footprint.nodata_pixels(img, None, spec)
  assert nd[:10, :10].all() and nd[20:25, 20:25].all() and nd.sum() == 125
  nd = footprint.nodata_pixels(img, None, footprint.FootprintSpec(nodata=0, border_only=True))
  assert nd[:10, :10].all() and not nd[20:25, 20:25].any()
  # The declared value counts too; with the mask *being* the no-data there is no footprint.
  assert footprint.nodata_pixels(img, 0.0, footprint.FootprintSpec()).sum() == 125
  assert footprint.nodata_pixels(img, 0.0, footprint.FootprintSpec(mask_is_nodata=True)) is None
  # A value the dtype cannot hold marks nothing.
  assert footprint.nodata_pixels(img, -9999.0, footprint.FootprintSpec()) is None


def test_nan_is_outside_the_footprint_unless_nan_as_missing():
  img = np.ones((8, 8, 2), np.float32)
  img[0, 0, 1] = np.nan
  assert footprint.nodata_pixels(img, None, footprint.FootprintSpec())[0, 0]
  assert footprint.nodata_pixels(img, None, footprint.FootprintSpec(nan_is_nodata=False)) is None


def test_unfilled_by_stripes_equals_the_whole_distance_transform():
  rng = np.random.default_rng(3)
  known = ndimage.gaussian_filter(rng.standard_normal((300, 170)), 8) > 0.05
  hole = ~known
  for dist in (3.0, 12.5, 40.0):
    want = hole & (ndimage.distance_transform_edt(~known) > dist)
    got = footprint.unfilled(known, hole, dist, stripe=37)
    np.testing.assert_array_equal(want, np.zeros_like(hole) if got is None else got)
  assert footprint.unfilled(known, hole, None) is None


def test_apply_takes_nodata_and_far_pixels_out_of_the_mask():
  img = np.full((60, 60, 1), 7, np.uint8)
  img[:, :5] = 0
  mask = np.zeros((60, 60), bool)
  mask[:, :40] = True  # covers the no-data strip too
  fp = footprint.apply(img, mask, 0.0, footprint.FootprintSpec(max_fill_distance=10))
  assert not (fp.mask & fp.nodata).any() and fp.nodata[:, :5].all()
  assert fp.unfilled is not None and fp.unfilled[:, 5:29].all() and not fp.unfilled[:, 31:].any()
  assert not (fp.mask & fp.unfilled).any()
  prov = footprint.provenance(fp.mask, fp.nodata, fp.unfilled)
  assert set(np.unique(prov)) == {0, 1, 3, 255}


def _tile(image, mask, nodata=None):
  return Tile(pair=TilePair(image_path="/x/t.tif", stem="t", mask_path=None),
              image=image,
              mask=mask,
              profile={
                  "dtype": str(image.dtype),
                  "nodata": None
              },
              nodata=nodata)


def test_corner_known_tile_context_has_no_zero_and_windows_carry_crops():
  img = np.zeros((200, 200, 3), np.uint16)
  img[:20, :20] = 20000
  mask = np.ones((200, 200), bool)
  mask[:20, :20] = False
  tile = _tile(img, mask)
  spec = WindowSpec(size=64, overlap=8)
  fill, mapped = tile_context(tile, spec)
  assert mapped is None and np.allclose(fill, 20000 / 65535, atol=1e-4)
  wins = list(cut(tile, spec, fill))
  assert wins and all(w.context is not None and w.context.shape == (64, 64, 3) for w in wins)
  far = [w for w in wins if w.y > 100 and w.x > 100][0]
  assert far.model_inputs()["mask"].min() == 1.0  # it sees no known pixel: only the context knows
  np.testing.assert_allclose(far.context, fill[far.y:far.y + 64, far.x:far.x + 64])


def test_nodata_is_unknown_to_the_model_but_not_filled():
  img = np.full((64, 64, 1), 9, np.uint8)
  img[:, :8] = 0
  nodata = np.zeros((64, 64), bool)
  nodata[:, :8] = True
  mask = np.zeros((64, 64), bool)
  mask[20:30, 20:30] = True
  (w,) = list(cut(_tile(img, mask, nodata), WindowSpec(size=64, overlap=8)))
  assert w.unknown[:, :8].min() == 1.0 and w.mask[:, :8].max() == 0.0
  assert w.model_inputs()["mask"] is w.unknown


def test_legacy_blend_hands_over_to_the_context_far_from_known_ground():
  restored = np.zeros((64, 64, 1), np.float32)
  context = np.ones((64, 64, 1), np.float32)
  unknown = np.ones((64, 64, 1), np.float32)
  unknown[:, :2] = 0  # known ground along the left edge
  out = legacy_blend(restored, context, unknown)
  assert out[:, :2].max() == 0.0  # known: the model's output (the composite skips them anyway)
  assert np.all(out[:, 40:] == 1.0)  # beyond reach: the context
  assert np.all(np.diff(out[0, :, 0]) >= 0)  # a ramp in between, no step
  np.testing.assert_array_equal(legacy_blend(restored, context, np.ones_like(unknown)), context)

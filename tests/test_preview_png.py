"""Quicklooks are PNG-encoded by transforms.preview.encode_png: the pixels Pillow writes."""

import io

import numpy as np
import pytest
from PIL import Image

from transforms import preview


@pytest.mark.parametrize("shape", [(256, 256, 3), (37, 100, 3), (1, 1, 3), (64, 50), (1, 9)])
def test_encode_png_round_trips_through_pillow(shape):
  img = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
  img[:3] = 255  # Wrapping differences (255 next to 0) too.
  img[-1] = 0
  back = Image.open(io.BytesIO(preview.encode_png(img)))
  assert back.mode == ("RGB" if len(shape) == 3 else "L")
  np.testing.assert_array_equal(np.asarray(back), img)


def _stretched(band, lo, hi):
  """The reference stretch, in float32 as ``to_png`` computes it."""
  scale = np.float32(255) / (np.float32(hi) - np.float32(lo))
  return np.clip((band - np.float32(lo)) * scale, 0, 255).astype(np.uint8)


def test_to_png_has_the_stretched_pixels():
  rng = np.random.default_rng(1)
  v = rng.random((40, 30, 4), np.float32)
  valid = rng.random((40, 30)) > 0.3
  got = np.asarray(Image.open(io.BytesIO(preview.to_png(v, valid))))
  for b in range(3):
    lo, hi = np.percentile(v[:, :, b][valid], [2, 98])
    np.testing.assert_array_equal(got[:, :, b], _stretched(v[:, :, b], lo, hi))


def test_a_large_quicklook_is_stretched_from_a_sample_within_the_percentile_band():
  """Above STRETCH_SAMPLE valid pixels the limits come from a regular subsample:
  they must still lie between the 1st and 3rd (97th and 99th) percentiles of
  all valid pixels, on a band with a gradient across the image and noise."""
  rng = np.random.default_rng(2)
  h, w = 512, 384
  ramp = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
  v = (ramp + 0.3 * rng.random((h, w, 3), np.float32)).astype(np.float32)
  valid = rng.random((h, w)) > 0.2
  assert valid.sum() > 4 * preview.STRETCH_SAMPLE
  lo, hi = preview.stretch_limits(v, valid)
  for b in range(3):
    p = np.percentile(v[:, :, b][valid], [1, 3, 97, 99])
    assert p[0] <= lo[b] <= p[1] and p[2] <= hi[b] <= p[3]
  got = np.asarray(Image.open(io.BytesIO(preview.to_png(v, valid))))
  np.testing.assert_array_equal(got[:, :, 0], _stretched(v[:, :, 0], lo[0], hi[0]))


def test_nan_pixels_show_black_and_do_not_move_the_stretch():
  rng = np.random.default_rng(3)
  v = rng.random((50, 60, 3), np.float32)
  with_nan = v.copy()
  with_nan[10:20, 5:25] = np.nan
  clean = np.ones((50, 60), bool)
  clean[10:20, 5:25] = False
  got = np.asarray(Image.open(io.BytesIO(preview.to_png(with_nan))))
  assert (got[10:20, 5:25] == 0).all()
  want = np.asarray(Image.open(io.BytesIO(preview.to_png(v, clean))))
  np.testing.assert_array_equal(got[clean], want[clean])

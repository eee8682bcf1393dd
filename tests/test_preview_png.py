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


def test_to_png_has_the_stretched_pixels():
  rng = np.random.default_rng(1)
  v = rng.random((40, 30, 4), np.float32)
  valid = rng.random((40, 30)) > 0.3
  got = np.asarray(Image.open(io.BytesIO(preview.to_png(v, valid))))
  for b in range(3):
    lo, hi = np.percentile(v[:, :, b][valid], [2, 98])
    want = np.clip((v[:, :, b] - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(got[:, :, b], want)

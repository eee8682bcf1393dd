"""push_pull on a crop: the fine levels are smoothed only around the crop,
and the result is bit-identical to cropping the whole fill (a pre-cut tile's
context is drawn over a wide margin of its neighbours, see transforms.neighbours)."""

import numpy as np
import pytest

from transforms.context import level_shape, push_pull


@pytest.mark.parametrize("seed", range(6))
def test_a_cropped_fill_equals_the_crop_of_the_whole_fill(seed):
  rng = np.random.default_rng(seed)
  h, w = (int(v) for v in rng.integers(5, 400, 2))
  values = rng.random((h, w, 3), dtype=np.float32)
  valid = (rng.random((h, w)) > rng.uniform(0.2, 0.99)).astype(np.float32)
  if seed % 2:
    valid *= rng.random((h, w), dtype=np.float32)  # Fractional weights, as LowRes cells.
  prior, levels = None, None
  if seed % 3 == 2:
    levels = int(rng.integers(1, 5))
    prior = rng.random(level_shape((h, w), levels) + (3,), dtype=np.float32)
  whole = push_pull(values, valid, prior=prior, levels=levels)
  for _ in range(8):
    y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
    y1, x1 = int(rng.integers(y0 + 1, h + 1)), int(rng.integers(x0 + 1, w + 1))
    part = push_pull(values, valid, prior=prior, levels=levels, crop=(y0, y1, x0, x1))
    np.testing.assert_array_equal(part, whole[y0:y1, x0:x1])


def test_a_tile_inside_a_wide_margin_reads_known_ground_far_outside_it():
  # Known ground only 300 px left of the tile: the crop's fill still comes from it.
  values = np.zeros((256 + 1024, 256 + 1024, 1), np.float32)
  valid = np.zeros(values.shape[:2], np.float32)
  values[:, :200], valid[:, :200] = 0.7, 1.0
  part = push_pull(values, valid, crop=(512, 768, 512, 768))
  assert part.shape == (256, 256, 1)
  np.testing.assert_allclose(part, 0.7, atol=1e-6)

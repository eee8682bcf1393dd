"""push_pull on a crop: the fine levels are smoothed only around the crop,
and the result is bit-identical to cropping the whole fill (a pre-cut tile's
context is drawn over a wide margin of its neighbours, see transforms.neighbours)."""

import numpy as np
import pytest

from transforms import context
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


@pytest.mark.parametrize("seed", range(8))
def test_filling_only_the_box_of_the_holes_changes_no_bit(seed, monkeypatch):
  """pull smooths the fine levels only around the bounding box of the pixels
  it fills (fill_box); with that narrowing switched off (the box made the whole
  crop) every output is the same, for compact and scattered holes, fractional
  weights, a prior, and crops."""
  rng = np.random.default_rng(100 + seed)
  h, w = (int(v) for v in rng.integers(20, 300, 2))
  values = rng.random((h, w, 3), dtype=np.float32)
  valid = np.ones((h, w), np.float32)
  for _ in range(int(rng.integers(1, 4))):  # A few compact clouds...
    y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
    valid[y:y + int(rng.integers(1, h // 2 + 2)), x:x + int(rng.integers(1, w // 2 + 2))] = 0.0
  if seed % 2:
    valid[rng.random((h, w)) > 0.995] = 0.0  # ...and scattered single pixels.
  if seed % 4 == 3:
    valid[valid > 0] *= rng.uniform(0.5, 1.0, int((valid > 0).sum())).astype(np.float32)
  prior, levels = None, None
  if seed % 3 == 2:
    levels = int(rng.integers(1, 5))
    prior = rng.random(level_shape((h, w), levels) + (3,), dtype=np.float32)
  crops = [None, (h // 4, h - h // 5, w // 3, w)]
  narrowed = [push_pull(values, valid, prior=prior, levels=levels, crop=c) for c in crops]
  monkeypatch.setattr(context, "fill_box", lambda w0: (0, w0.shape[0], 0, w0.shape[1]))
  for c, got in zip(crops, narrowed):
    np.testing.assert_array_equal(got, push_pull(values, valid, prior=prior, levels=levels, crop=c))


def test_fill_box():
  w0 = np.ones((6, 7), np.float32)
  assert context.fill_box(w0) is None
  w0[2, 3] = 0.5
  w0[4, 1] = 0.0
  assert context.fill_box(w0) == (2, 5, 1, 4)

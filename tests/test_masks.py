"""Masks: files, no-data, probability thresholds, dilation."""

import numpy as np
import pytest

from transforms import decode
from transforms.masks import MaskSpec, derive


def test_file_mask_any_nonzero_and_threshold():
  img = np.zeros((4, 4, 3), np.uint8)
  probs = np.array([[0, 10, 200, 255]] * 4, np.uint8)
  m = derive(img, probs, None, MaskSpec())
  assert m.sum() == 12
  m = derive(img, probs, None, MaskSpec(threshold=100))
  assert m.sum() == 8


def test_nodata_mask_needs_all_bands():
  img = np.ones((3, 3, 2), np.uint16)
  img[0, 0] = 0
  img[1, 1, 0] = 0  # Only one band: not no-data.
  m = derive(img, None, 0, MaskSpec(source="nodata"))
  assert m.sum() == 1 and m[0, 0]
  with pytest.raises(ValueError, match="no-data"):
    derive(img, None, None, MaskSpec(source="nodata"))


def test_probability_band_is_removed_and_thresholded():
  img = np.zeros((5, 5, 4), np.float32)
  img[:, :, 3] = np.linspace(0, 1, 25).reshape(5, 5)
  m = derive(img, None, None, MaskSpec(source="band:4", threshold=0.5))
  assert m.shape == (5, 5) and m.sum() == 12
  # The probability band is not restored: decode keeps the other three.
  assert decode._band_index(4, decode.DecodeSpec(mask=MaskSpec(source="band:4", threshold=0.5))) == (0, 1, 2)


def test_dilate_grows_by_n_pixels():
  mask = np.zeros((11, 11), np.uint8)
  mask[5, 5] = 1
  m = derive(np.zeros((11, 11, 1), np.uint8), mask, None, MaskSpec(dilate=2))
  assert m.sum() == 25 and m[3:8, 3:8].all()

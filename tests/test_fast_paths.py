"""The faster forms of the fill's smoothing, the seam score and the provenance
encoding give the bits of the plain forms they replaced (issue 13, branch speed3)."""

import numpy as np
import pytest
from rasterio.io import MemoryFile
from scipy import ndimage

from transforms import context, metrics, provenance


def _plain_sweeps(f, known, rest, sweeps):
  for _ in range(sweeps):
    f = known + rest * context._box3(f)  # pylint: disable=protected-access
  return f


@pytest.mark.parametrize("shape", [(3, 3), (3, 8), (7, 4), (31, 40), (32, 33), (64, 47), (130, 129)])
def test_smoothing_in_place_is_bit_identical_to_the_plain_loop(shape):
  rng = np.random.default_rng(sum(shape))
  f = rng.random(shape + (3,), dtype=np.float32)
  w = rng.random(shape + (1,), dtype=np.float32)
  known = rng.random(shape + (3,), dtype=np.float32) * w
  rest = np.repeat(1.0 - w, 3, axis=2)
  out = context._smooth(f, known, rest, 9)  # pylint: disable=protected-access
  np.testing.assert_array_equal(out.view(np.uint32), _plain_sweeps(f, known, 1.0 - w, 9).view(np.uint32))
  box = context._box3_copy(f)  # pylint: disable=protected-access
  np.testing.assert_array_equal(box.view(np.uint32), context._box3(f).view(np.uint32))  # pylint: disable=protected-access


def _plain_seam(unit, mask):
  """The score over the whole tile, pixel pair by pixel pair (rows, then columns)."""
  img = unit.mean(axis=2)
  ring = ndimage.binary_dilation(mask, ndimage.generate_binary_structure(2, 1), iterations=2) & ~mask
  h, w = mask.shape
  across, inside = [], []
  for dy, dx in ((0, 1), (1, 0)):
    for y in range(h - dy):
      for x in range(w - dx):
        step = np.abs(img[y, x] - img[y + dy, x + dx])
        if mask[y, x] != mask[y + dy, x + dx]:
          across.append(step)
        if ring[y, x] and ring[y + dy, x + dx]:
          inside.append(step)
  if not across or not inside:
    return None
  return float(np.array(across, np.float32).mean() / max(np.array(inside, np.float32).mean(), 1e-6))


@pytest.mark.parametrize("seed", range(12))
def test_seam_score_on_the_bounding_box_equals_the_whole_tile(seed):
  rng = np.random.default_rng(seed)
  h, w = (int(v) for v in rng.integers(1, 60, 2))
  unit = rng.random((h, w, 3), dtype=np.float32)
  mask = np.zeros((h, w), bool)
  if seed % 4:
    y0, y1 = sorted(int(v) for v in rng.integers(0, h, 2))
    x0, x1 = sorted(int(v) for v in rng.integers(0, w, 2))
    mask[y0:y1 + 1, x0:x1 + 1] = rng.random((y1 + 1 - y0, x1 + 1 - x0)) < 0.7
  assert metrics.seam_score(unit, mask) == _plain_seam(unit, mask)


@pytest.mark.parametrize("shape", [(256, 256), (100, 70), (300, 513)])
def test_provenance_bytes_equal_a_copy_from_a_deflated_gtiff(shape):
  classes = np.random.default_rng(0).choice(np.array([0, 1, 2, 3, 255], np.uint8), shape)
  profile = {"crs": "EPSG:32621", "transform": [30.0, 0.0, 771105.0, 0.0, -30.0, -2824515.0]}
  with MemoryFile() as mem, MemoryFile() as out:
    with mem.open(**provenance.write_kwargs(profile, *shape)) as dst:
      dst.write(classes, 1)
      provenance._finish(dst)  # pylint: disable=protected-access
    provenance._cog_copy(mem.name, out.name)  # pylint: disable=protected-access
    assert provenance.encode(classes, profile) == out.read()

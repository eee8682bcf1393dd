"""The class-wise guided fill (transforms.regression.class_mapping): land covers
that changed differently between the dates are mapped differently."""

import numpy as np

from transforms import regression


def _fields(seed=0, size=96):
  """A guide of three land covers in 8 px fields, and a target whose change is
  not linear in the guide (the middle cover got brighter, the bright one darker)."""
  rng = np.random.default_rng(seed)
  cover = np.kron(rng.integers(0, 3, (size // 8, size // 8)), np.ones((8, 8), np.int64))
  guide = np.array([0.2, 0.5, 0.8], np.float32)[cover] + rng.normal(0, 0.01, cover.shape).astype(np.float32)
  target = np.array([0.3, 0.7, 0.2], np.float32)[cover] + rng.normal(0, 0.01, cover.shape).astype(np.float32)
  valid = np.ones(cover.shape, np.float32)
  valid[24:72, 24:72] = 0.0
  return target[..., None], valid, guide[..., None]


def _hole_rmse(out, target, valid):
  hole = valid < 1
  return float(np.sqrt(((out - target)[hole]**2).mean()))


def test_classes_follow_a_change_one_regression_cannot():
  target, valid, guide = _fields()
  ones = np.ones_like(valid)
  one = regression.guided_fill(target, valid, guide, ones, radius=32, classes=0).fill
  per_class = regression.guided_fill(target, valid, guide, ones, radius=32, classes=3).fill
  assert _hole_rmse(per_class, target, valid) < 0.03 < 0.5 * _hole_rmse(one, target, valid)
  known = valid >= 1
  assert np.array_equal(per_class[known], target[known])  # known pixels untouched


def test_class_mapping_is_deterministic_and_degrades_gracefully():
  target, valid, guide = _fields(seed=1)
  both = valid >= 1
  usable = np.ones_like(both)
  base = np.full(target.shape, 0.5, np.float32)
  a = regression.class_mapping(target, guide, both, usable, 32, 3, lambda: base)
  b = regression.class_mapping(target, guide, both, usable, 32, 3, lambda: base)
  assert np.array_equal(a, b)
  flat = np.full_like(guide, 0.4)  # one value: no classes to find, the base mapping comes back
  assert regression.class_mapping(target, flat, both, usable, 32, 8, lambda: base) is base
  none = np.zeros_like(both)  # no usable guide pixel
  assert regression.class_mapping(target, guide, both, none, 32, 8, lambda: base) is base
  assert len(regression.spectral_centroids(guide, usable, 5)) == 5


def test_block_moments_are_the_sums_over_each_block_and_class():
  """block_moments (every class in one bincount pass) against plain loops over blocks and classes."""
  rng = np.random.default_rng(3)
  h, w, step, k = 13, 10, 4, 3  # sides not multiples of the step: partial blocks at the edges
  target = rng.random((h, w, 2), dtype=np.float32)
  guide = rng.random((h, w, 3), dtype=np.float32)
  both = rng.random((h, w)) > 0.3
  labels = rng.integers(0, k, (h, w))
  got = regression.block_moments(target, guide, both, step, labels=labels, k=k)
  assert got.shape == (4, 3, k, 1 + 3 + 2 + 6 + 6)
  for by in range(4):
    for bx in range(3):
      for j in range(k):
        sel = np.zeros((h, w), bool)
        sel[by * step:(by + 1) * step, bx * step:(bx + 1) * step] = True
        sel &= both & (labels == j)
        g, t = guide[sel].astype(np.float64), target[sel].astype(np.float64)
        want = [sel.sum()] + list(g.sum(0)) + list(t.sum(0))
        want += [(g[:, a] * g[:, b]).sum() for a in range(3) for b in range(a, 3)]
        want += [(g[:, a] * t[:, b]).sum() for a in range(3) for b in range(2)]
        np.testing.assert_allclose(got[by, bx, j], want, rtol=1e-5, atol=1e-6)
  # Without labels: one group, the sums of all classes.
  np.testing.assert_allclose(regression.block_moments(target, guide, both, step)[:, :, 0], got.sum(2), rtol=1e-5)


def test_the_one_regression_for_all_pixels_is_computed_only_when_a_class_needs_it():
  """class_mapping takes the all-pixel mapping as a function and calls it at
  most once: not at all when every class has pixels known in both, once when
  the guide has a single class (and the result is that mapping)."""
  rng = np.random.default_rng(3)
  target = rng.random((64, 64, 3)).astype(np.float32)
  guide = (target * 0.8 + 0.1).astype(np.float32)
  both = np.ones((64, 64), bool)
  calls = []

  def base():
    calls.append(1)
    return np.full(target.shape, 0.5, np.float32)

  regression.class_mapping(target, guide, both, both, 16, 4, base)
  assert calls == []
  flat = np.full_like(guide, 0.3)
  out = regression.class_mapping(target, flat, both, both, 16, 4, base)
  assert calls == [1] and np.all(out == 0.5)

"""Mask generator: coverage range, kinds, real cloud shapes."""

import os

import numpy as np
import pytest

from training.masks import (KINDS, MaskGenerator, cloud_mask_files, fit_coverage)


@pytest.fixture(scope="module")
def gen(data_dir):
  files = cloud_mask_files(os.path.join(data_dir, "cloud_masks"), "train")
  assert files
  return MaskGenerator(files)


def test_coverage_range_over_many_draws(gen):
  rng = np.random.default_rng(0)
  covs = np.array([gen.sample(rng, 96, 96).mean() for _ in range(150)])
  assert covs.min() >= 0.01 - 1e-3 and covs.max() <= 0.60 + 1e-3
  assert covs.min() < 0.1 and covs.max() > 0.5  # the range is spanned


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_hits_forced_coverage(gen, kind):
  rng = np.random.default_rng(1)
  for cov in (0.05, 0.3, 0.55):
    m = gen.sample(rng, 80, 72, kind=kind, coverage=cov)
    assert m.shape == (80, 72) and m.dtype == np.float32
    assert set(np.unique(m)) <= {0.0, 1.0}
    assert abs(m.mean() - cov) <= 0.02


def test_train_and_val_cloud_files_are_disjoint(data_dir):
  d = os.path.join(data_dir, "cloud_masks")
  train, val = cloud_mask_files(d, "train"), cloud_mask_files(d, "val")
  assert train and val and not set(train) & set(val)
  assert sorted(train + val) == cloud_mask_files(d, "all")


def test_fit_coverage_is_exact():
  rng = np.random.default_rng(2)
  shape = np.zeros((50, 60), bool)
  shape[10:20, 10:30] = True
  for cov in (0.01, 0.2, 0.6):
    assert abs(fit_coverage(shape, cov, rng).mean() - cov) < 1.0 / 3000


def test_synthetic_only_without_cloud_files():
  g = MaskGenerator(())
  assert "clouds" not in g.kinds
  m = g.sample(np.random.default_rng(3), 64, 64)
  assert 0.01 - 1e-3 <= m.mean() <= 0.6 + 1e-3

"""The numpy sampler: reproducible, context from the pipeline's own code,
guide dates of the same place, and the bundle round trip."""

import os

import numpy as np
import pytest

from training import bundle, data
from training.masks import MaskGenerator
from training.scenes import Scene


def _scene(path, seed, shape=(300, 300, 4)):
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:shape[0], 0:shape[1]] / 50.0
  img = np.stack([0.5 + 0.3 * np.sin(yy + b) * np.cos(xx * (1 + 0.1 * seed)) for b in range(shape[2])], -1)
  img += 0.01 * rng.standard_normal(img.shape)
  return Scene(path, np.clip(img, 0, 1).astype(np.float32), np.ones(shape[:2], bool))


@pytest.fixture()
def sampler():
  places = data.group_places([_scene("naip/m_1_2009.tif", 0), _scene("naip/m_1_2012.tif", 1), _scene("solo/x.tif", 2)])
  return data.Sampler(places, 64, MaskGenerator(), "train", region=128, p_guide=0.5)


def test_places_group_dates():
  places = data.group_places(
      [_scene("naip/m_1_20090818.tif", 0),
       _scene("naip/m_1_20120731.tif", 1, (299, 300, 4)),
       _scene("other/y.tif", 2)])
  assert sorted(len(p.scenes) for p in places) == [1, 2]
  two = [p for p in places if len(p.scenes) == 2][0]
  assert {s.image.shape for s in two.scenes} == {(299, 300, 4)}


def test_sample_is_a_pure_function_of_seed_and_index(sampler):
  a, b = sampler.sample(3, 17), sampler.sample(3, 17)
  for k in data.KEYS:
    np.testing.assert_array_equal(a[k], b[k])
  c = sampler.sample(3, 18)
  assert any(not np.array_equal(a[k], c[k]) for k in data.KEYS)


def test_context_and_guide(sampler):
  seen_guided = seen_unguided = False
  for i in range(40):
    e = sampler.sample(0, i)
    known = e["mask"][..., 0] < 0.5
    np.testing.assert_allclose(e["context"][known], e["target"][known], atol=1e-6)
    assert (e["image"][~known] == 0).all()
    assert np.isfinite(e["context"]).all()
    if (~known).sum() > 10:
      assert e["context"][~known].std() > 0
    if (e["guide_mask"] < 0.5).any():
      seen_guided = True
    else:
      seen_unguided = True
      assert (e["guide"] == 0).all()
  assert seen_guided and seen_unguided


def test_batches_from_worker_processes_equal_in_process(sampler):
  args = ()
  first = next(data.batches(_factory, args, 4, seed=1, workers=0))
  pooled = next(data.batches(_factory, args, 4, seed=1, workers=1))
  for k in data.KEYS:
    np.testing.assert_array_equal(first[k], pooled[k])


def test_region_reuse_shares_contexts_across_batches(sampler, monkeypatch):
  """--region-reuse R: R batches from one group of regions, each with as many
  regions as a plain batch, a 1/R share of the context computations, every
  crop still a consistent element (rotated and flipped as a whole)."""
  plain = sampler.batch(5, 0, 8, crops_per_region=2)
  same = sampler.batch_group(5, 0, 8, crops_per_region=2, reuse=1)
  assert len(same) == 1 and all(np.array_equal(plain[k], same[0][k]) for k in data.KEYS)
  calls = []
  real = data.ctx.push_pull
  monkeypatch.setattr(data.ctx, "push_pull", lambda *a, **kw: calls.append(1) or real(*a, **kw))
  monkeypatch.setattr(data.regression, "guided_fill", _counting(data.regression.guided_fill, calls))
  group = sampler.batch_group(5, 0, 8, crops_per_region=2, reuse=3)
  assert len(calls) == 4  # one context per region (8 crops / 2 a region), for all three batches
  again = sampler.batch_group(5, 0, 8, crops_per_region=2, reuse=3)
  assert len(group) == 3
  for b, b2 in zip(group, again):
    assert all(b[k].shape == plain[k].shape and np.array_equal(b[k], b2[k]) for k in data.KEYS)
    known = b["mask"][..., 0] < 0.5
    np.testing.assert_allclose(b["context"][known], b["target"][known], atol=1e-6)  # same rotation for all
    np.testing.assert_array_equal(b["image"], b["target"] * (1.0 - b["mask"]))
  assert not np.array_equal(group[0]["target"], group[1]["target"])  # other crops of the same regions


def _counting(fn, calls):

  def wrapped(*a, **kw):
    calls.append(1)
    return fn(*a, **kw)

  return wrapped


def test_stream_with_region_reuse_matches_its_groups():
  stream = data.batches(_factory, (), 4, seed=2, workers=0, region_reuse=2)
  got = [next(stream) for _ in range(4)]
  want = _factory().batch_group(2, 0, 4, 2, 2) + _factory().batch_group(2, 4, 4, 2, 2)
  for g, w in zip(got, want):
    for k in data.KEYS:
      np.testing.assert_array_equal(g[k], w[k])


def _factory():
  places = data.group_places([_scene("naip/m_1_2009.tif", 0), _scene("naip/m_1_2012.tif", 1)])
  return data.Sampler(places, 64, MaskGenerator(), "train", region=128)


def test_bundle_round_trip(tmp_path, data_dir):
  f = os.path.join(data_dir, "rmnp", "rmnp-rgb.tif")
  path = str(tmp_path / "b.npz")
  info = bundle.pack(data_dir, path, [f])
  scenes, clouds = bundle.load(path)
  assert [s.path for s in scenes] == ["rmnp/rmnp-rgb.tif"] == info["files"]
  from training.scenes import read_scene
  ref = read_scene(f)
  assert np.abs(scenes[0].image - ref.image).max() <= 0.5 / 255 + 1e-6
  np.testing.assert_array_equal(scenes[0].valid, ref.valid)
  assert clouds["train"] and clouds["val"]

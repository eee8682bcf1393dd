"""Every bad input lands in failed/ with its reason; good tiles beside it are restored."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from pipeline import cli
from tests.helpers import cloud_mask, read_jsonl, read_raster, read_summary, write_geotiff, write_png

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory, mean_model):
  d = tmp_path_factory.mktemp("bad")
  img, msk = d / "img", d / "mask"
  rng = np.random.default_rng(3)

  def good(stem, h=96, w=96, c=3, dtype=np.uint16):
    a = rng.integers(2000, 9000, (h, w, c)).astype(dtype)
    write_geotiff(str(img / f"{stem}.tif"), a)
    write_png(str(msk / f"{stem}.png"), cloud_mask(h, w, seed=len(stem)).astype(np.uint8) * 255)
    return a

  good("good_a")
  good("good_b", 130, 70)
  # Corrupt bytes: a PNG header followed by garbage.
  (img / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(500))
  write_png(str(msk / "corrupt.png"), np.zeros((8, 8), np.uint8))
  # Truncated TIFF: a real one cut in half.
  good("truncated")
  data = (img / "truncated.tif").read_bytes()
  (img / "truncated.tif").write_bytes(data[:len(data) // 2])
  # Missing mask.
  write_geotiff(str(img / "no_mask.tif"), rng.integers(0, 9000, (64, 64, 3)).astype(np.uint16))
  # Size mismatch.
  write_geotiff(str(img / "size_mismatch.tif"), rng.integers(0, 9000, (64, 64, 3)).astype(np.uint16))
  write_png(str(msk / "size_mismatch.png"), np.full((60, 64), 255, np.uint8))
  # All cloud, no cloud.
  write_geotiff(str(img / "all_cloud.tif"), rng.integers(0, 9000, (64, 64, 3)).astype(np.uint16))
  write_png(str(msk / "all_cloud.png"), np.full((64, 64), 255, np.uint8))
  write_geotiff(str(img / "no_cloud.tif"), rng.integers(0, 9000, (64, 64, 3)).astype(np.uint16))
  write_png(str(msk / "no_cloud.png"), np.zeros((64, 64), np.uint8))
  # NaN in float input, outside the mask.
  f = rng.uniform(0, 1, (64, 64, 3)).astype(np.float32)
  f[40, 40, 1] = np.nan
  write_geotiff(str(img / "nan_float.tif"), f)
  m = np.zeros((64, 64), np.uint8)
  m[5:15, 5:15] = 255
  write_png(str(msk / "nan_float.png"), m)
  # Wrong band count.
  write_geotiff(str(img / "two_bands.tif"), rng.integers(0, 9000, (64, 64, 2)).astype(np.uint16))
  write_png(str(msk / "two_bands.png"), m)
  out = d / "out"
  status = cli.main([
      "run", "--images",
      str(img / "*"), "--masks",
      str(msk / "{stem}.png"), "--output",
      str(out), "--model", mean_model, "--no-report"
  ])
  return d, out, status


EXPECTED = {  # stem -> (outcome, stage, a phrase of the reason)
    "corrupt": ("failed", "decode", "not a readable"),
    "truncated": ("failed", "decode", "not a readable TIFF"),
    "no_mask": ("failed", "match", "mask not found"),
    "size_mismatch": ("failed", "validate", "mask is 64x60 but the image is 64x64"),
    "all_cloud": ("failed", "validate", "covers every pixel"),
    "no_cloud": ("skipped", "validate", "no missing pixel"),
    "nan_float": ("failed", "validate", "NaN pixels outside the mask"),
    "two_bands": ("failed", "validate", "the image has 2 bands but the model takes 3"),
}


def test_each_bad_input_is_dead_lettered_with_its_reason(bad_run):
  _, out, status = bad_run
  dead = {os.path.splitext(os.path.basename(r["path"]))[0]: r for r in read_jsonl(str(out / "failed"))}
  assert set(dead) == set(EXPECTED)
  for stem, (outcome, stage, phrase) in EXPECTED.items():
    r = dead[stem]
    assert (r["outcome"], r["stage"]) == (outcome, stage), (stem, r)
    assert phrase in r["reason"], (stem, r["reason"])
  assert status == 3  # Finished, with failures: what a scheduler acts on.


def test_good_tiles_beside_them_are_restored_and_counts_add_up(bad_run):
  d, out, _ = bad_run
  s = read_summary(str(out))
  n_inputs = len(os.listdir(d / "img"))
  assert s["matched"] == n_inputs == sum(s["counts"].values())
  assert s["counts"] == {"restored": 2, "skipped": 1, "failed": 7}
  assert sorted(os.listdir(out / "restored")) == ["good_a.tif", "good_b.tif"]
  for stem in ("good_a", "good_b"):
    src, _ = read_raster(str(d / "img" / f"{stem}.tif"))
    got, _ = read_raster(str(out / "restored" / f"{stem}.tif"))
    from PIL import Image
    m = np.asarray(Image.open(d / "mask" / f"{stem}.png")) > 0
    np.testing.assert_array_equal(got[~m], src[~m])


def test_nan_as_missing_restores_the_float_tile(bad_run, mean_model, tmp_path):
  d, _, _ = bad_run
  (tmp_path / "img").mkdir()
  shutil.copy(d / "img" / "nan_float.tif", tmp_path / "img")
  out = tmp_path / "out"
  status = cli.main([
      "run", "--images",
      str(tmp_path / "img" / "*.tif"), "--masks",
      str(d / "mask" / "{stem}.png"), "--output",
      str(out), "--model", mean_model, "--nan-as-missing", "--no-report"
  ])
  assert status == 0
  got, _ = read_raster(str(out / "restored" / "nan_float.tif"))
  assert got.dtype == np.float32 and np.isfinite(got).all()


def test_declared_nan_nodata_is_kept_not_refused(mean_model, tmp_path):
  """A float GeoTIFF whose no-data value is NaN: its all-NaN pixels are outside
  the footprint (kept, provenance no-data), not 'NaN outside the mask'; a
  pixel NaN in only one band is still refused."""
  rng = np.random.default_rng(5)
  f = rng.uniform(0.05, 0.9, (64, 64, 3)).astype(np.float32)
  f[:, :6] = np.nan  # A no-data strip, all bands.
  (tmp_path / "img").mkdir()
  (tmp_path / "msk").mkdir()
  write_geotiff(str(tmp_path / "img" / "declared.tif"), f, nodata=float("nan"))
  partial = f.copy()
  partial[40, 40, 1] = np.nan
  write_geotiff(str(tmp_path / "img" / "partial.tif"), partial, nodata=float("nan"))
  m = np.zeros((64, 64), bool)
  m[16:32, 16:32] = True
  for stem in ("declared", "partial"):
    write_png(str(tmp_path / "msk" / f"{stem}.png"), m.astype(np.uint8) * 255)
  out = tmp_path / "out"
  assert cli.main([
      "run", "--images",
      str(tmp_path / "img" / "*.tif"), "--masks",
      str(tmp_path / "msk" / "{stem}.png"), "--output",
      str(out), "--model", mean_model, "--no-report"
  ]) == 3
  got, _ = read_raster(str(out / "restored" / "declared.tif"))
  assert np.isnan(got[:, :6]).all() and np.isfinite(got[m]).all()
  np.testing.assert_array_equal(got[~m][:, 0][~np.isnan(f[~m][:, 0])], f[~m][:, 0][~np.isnan(f[~m][:, 0])])
  prov, _ = read_raster(str(out / "provenance" / "declared.tif"))
  assert (prov[:, :6] == 255).all()
  (dead,) = read_jsonl(str(out / "failed"))
  assert dead["path"].endswith("partial.tif") and "1 NaN pixels outside the mask" in dead["reason"]

"""QA-band masks (issue 12.5) and inputs checked against profiles at launch
(issue 12.1), on real data: a Landsat Collection 2-style QA_PIXEL band and a
Sentinel-2 SCL-style class layer built from real cloud masks, the real
13-band Sentinel-2 L1C scenes, the 4-band S2 L2A stack and 4-band NAIP."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from pipeline import cli, options, preflight
from pipeline.usage import UsageError
from tests.helpers import read_jsonl, read_raster, read_summary, write_geotiff
from transforms import masks, qa_masks

S2_L1C = "sentinel2/eolearn_reference_{}.tif"
S2_L2A = "sentinel2/xrspatial_s2_B4B3B2B8.tif"
NAIP = "naip_5m/m_4709963_se_14_1_20090818.tif"


def _real_mask(shared, name: str) -> np.ndarray:
  return np.asarray(Image.open(os.path.join(shared, "cloud_masks", name))) > 0


def landsat_qa_pixel(shared) -> tuple[np.ndarray, np.ndarray]:
  """A 512² QA_PIXEL band (uint16, Collection 2 bit layout) from real cloud masks.

  Cloud (bit 3) is the real UKIS Landsat 7 mask; dilated cloud (bit 1) its
  3-pixel ring; cloud shadow (bit 4) the mask cast 25 px down and 40 px right;
  cirrus (bit 2) and snow (bit 5) come from the real Landsat 5 mask (not
  missing for bits 1,3,4); clear (bit 6) and water (bit 7) elsewhere.
  Returns (qa, expected missing for bits 1,3,4).
  """
  cloud = _real_mask(shared, "ukis/ukis_landsat7.png")
  other = _real_mask(shared, "ukis/ukis_landsat5.png")
  dilated = ndimage.binary_dilation(cloud, np.ones((3, 3), bool), iterations=3) & ~cloud
  shadow = np.zeros_like(cloud)
  shadow[25:, 40:] = cloud[:-25, :-40]
  shadow &= ~cloud & ~dilated
  qa = np.zeros(cloud.shape, np.uint16)
  qa[cloud] |= 1 << 3
  qa[dilated] |= 1 << 1
  qa[shadow] |= 1 << 4
  cirrus = other & ~cloud & ~dilated & ~shadow
  qa[cirrus] |= 1 << 2
  qa[cirrus[:, ::-1]] |= 1 << 5
  clear = qa == 0
  qa[clear] |= 1 << 6
  qa[clear & (np.arange(512)[None, :] < 60)] |= 1 << 7
  qa[:4, :] = 1  # Fill (bit 0 alone): not asked for, so not missing.
  expected = cloud | dilated | shadow
  expected[:4, :] = False
  return qa, expected


def test_qa_bits_on_a_landsat_qa_pixel_band(shared_data):
  qa, expected = landsat_qa_pixel(shared_data)
  assert 0.3 < expected.mean() < 0.7 and (qa & (1 << 2)).any() and (qa & (1 << 5)).any()
  np.testing.assert_array_equal(qa_masks.bits_set(qa, [1, 3, 4]), expected)
  np.testing.assert_array_equal(qa_masks.bits_set(qa[:, :, None], [3]), (qa & 8) > 0)
  with pytest.raises(ValueError, match="integer"):
    qa_masks.bits_set(qa.astype(np.float32), [3])
  with pytest.raises(ValueError, match="8 bits"):
    qa_masks.bits_set(qa.astype(np.uint8), [9])
  spec = masks.MaskSpec(source="file", bits=(1, 3, 4))
  got = masks.derive(np.zeros((512, 512, 3), np.uint16), qa[:, :, None], None, spec)
  np.testing.assert_array_equal(got, expected)


def test_class_values_on_an_scl_layer(shared_data):
  prob = np.load(os.path.join(shared_data, "cloud_masks", "eolearn_cloud_probability.npy"))[20].astype(np.float32)
  scl = np.full(prob.shape, 4, np.uint8)  # 4 vegetation
  scl[prob > 0.4] = 8
  scl[prob > 0.7] = 9
  scl[:, :10] = 6  # water
  scl[90:, :] = 10  # cirrus
  expected = np.isin(scl, [3, 8, 9, 10])
  np.testing.assert_array_equal(qa_masks.values_in(scl, [3, 8, 9, 10]), expected)
  got = masks.derive(np.zeros(scl.shape + (4,), np.uint16), scl, None, masks.MaskSpec(values=(3, 8, 9, 10)))
  np.testing.assert_array_equal(got, expected)


def test_landsat_c2_l2_profile_restores_under_a_qa_band(tmp_path, shared_data, mean_model):
  import rasterio
  from rasterio.windows import Window
  qa, expected = landsat_qa_pixel(shared_data)
  with rasterio.open(os.path.join(shared_data, "landsat8/LC08_L1TP_224078_20200518_B2B3B4.tif")) as src:
    image = np.moveaxis(src.read(window=Window(600, 600, 512, 512)), 0, -1)
  write_geotiff(str(tmp_path / "in" / "t1.tif"), image)
  write_geotiff(str(tmp_path / "in" / "t1_QA_PIXEL.tif"), qa[:, :, None])
  out = tmp_path / "out"
  rc = cli.main([
      "run", "--images",
      str(tmp_path / "in" / "t?.tif"), "--masks", "{dir}/{stem}_QA_PIXEL.tif", "--output",
      str(out), "--model", mean_model, "--config", "landsat_c2_l2", "--value-range", "0,65535", "--no-report", "-q"
  ])
  assert rc == 0 and read_summary(str(out))["counts"]["restored"] == 1
  got, _ = read_raster(str(out / "restored" / "t1.tif"))
  np.testing.assert_array_equal(got[~expected], image[~expected])
  assert not np.array_equal(got[expected], image[expected])
  prov, _ = read_raster(str(out / "provenance" / "t1.tif"))
  np.testing.assert_array_equal(prov[:, :, 0] == 1, expected)


def _args(*argv):
  args, _ = options.parse(["--images", "x", "--masks", "m/{stem}.png", "--output", "o", *argv])
  return args


def test_sentinel2_l1c_13_band_scenes_are_refused_by_the_l2a_profile(capsys, tmp_path, shared_data, mean_model):
  """Issue 12.1: the L1C files under --config sentinel2_l2a restored B01-B03 on a 0…10000 scale; now exit 2."""
  images = os.path.join(shared_data, "sentinel2", "eolearn_reference_*.tif")
  rc = cli.main([
      "run", "--images", images, "--masks",
      str(tmp_path / "{stem}.png"), "--output",
      str(tmp_path / "o"), "--model", mean_model, "--config", "sentinel2_l2a"
  ])
  err = capsys.readouterr().err.strip()
  assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
  assert "float32 with 13 bands" in err and "uint16 with 4 bands (B04,B03,B02,B08)" in err
  assert not (tmp_path / "o").exists()
  card = preflight.read_card(mean_model)
  paths = preflight.match_inputs(images)
  with pytest.raises(UsageError, match=r"fills under 0\.1% of the value range 0…10000"):
    preflight.check_sample(paths, _args("--config", "sentinel2_l1c", "--value-range", "0,10000"), card)


def test_sentinel2_l1c_profile_takes_float_and_uint16(tmp_path, shared_data, mean_model):
  card = preflight.read_card(mean_model)
  paths = preflight.match_inputs(os.path.join(shared_data, "sentinel2", "eolearn_reference_*.tif"))
  args = _args("--config", "sentinel2_l1c")
  assert args.bands == [4, 3, 2]
  preflight.check_sample(paths, args, card)
  assert args.value_range == (0.0, 1.0)
  arr, _ = read_raster(paths[0])
  write_geotiff(str(tmp_path / "u16.tif"), np.round(arr * 10000).astype(np.uint16))
  args = _args("--config", "sentinel2_l1c")
  preflight.check_sample([str(tmp_path / "u16.tif")], args, card)
  assert args.value_range == (0.0, 10000.0)


def test_sentinel2_l1c_run_restores_red_green_blue(tmp_path, shared_data, mean_model):
  images = tmp_path / "in"
  for i, clm in enumerate((20, 36, 40)):
    arr, _ = read_raster(os.path.join(shared_data, S2_L1C.format(i)))
    write_geotiff(str(images / f"s2_{i}.tif"), arr, crs="EPSG:32633")
    mask = np.asarray(Image.open(os.path.join(shared_data, "cloud_masks", "eolearn_clm", f"clm_{clm:02d}.png")))
    Image.fromarray(mask).save(images / f"s2_{i}_mask.png")
  out = tmp_path / "out"
  rc = cli.main([
      "run", "--images",
      str(images / "s2_?.tif"), "--masks", "{dir}/{stem}_mask.png", "--output",
      str(out), "--model", mean_model, "--config", "sentinel2_l1c", "--dilate", "0", "--evaluate", "--no-report", "-q"
  ])
  assert rc == 0 and read_summary(str(out))["counts"]["restored"] == 3
  rows = read_jsonl(str(out / "metrics"))
  assert all(r["metrics"]["value_scale"] == [0.0, 1.0] for r in rows)
  assert all(r["metrics"]["outside_value_range"] < 0.01 for r in rows)
  assert all(r["metrics"]["psnr"] < 60 for r in rows)  # Not the 101 dB of holes filled black on a wrong scale.
  for i, clm in enumerate((20, 36, 40)):
    src, _ = read_raster(os.path.join(shared_data, S2_L1C.format(i)))
    got, _ = read_raster(str(out / "restored" / f"s2_{i}.tif"))
    mask = np.asarray(Image.open(os.path.join(shared_data, "cloud_masks", "eolearn_clm", f"clm_{clm:02d}.png"))) > 0
    assert got.shape == src.shape  # Every band comes out (issue 12.2); --bands 4,3,2 was 3 bands out.
    np.testing.assert_array_equal(got[~mask], src[~mask])
    rgb = got[:, :, [3, 2, 1]]  # B04,B03,B02, the bands the model restored.
    assert np.all(rgb[mask] > 0) and np.all(rgb[mask] <= 1.0)  # Filled on the 0…1 scale, not black.


def test_naip_and_s2_l2a_four_band_profiles(capsys, tmp_path, shared_data, mean_model):
  card = preflight.read_card(mean_model)
  naip = [os.path.join(shared_data, NAIP)]
  with pytest.raises(UsageError, match=r"uint8 with 4 bands; the profile expects uint16 with 4 bands \(B04"):
    preflight.check_sample(naip, _args("--config", "sentinel2_l2a"), card)
  preflight.check_sample(naip, _args("--config", "rgb8", "--bands", "1,2,3"), card)
  with pytest.raises(UsageError, match="--bands 4,5,6 asks for band 6"):
    preflight.check_sample(naip, _args("--config", "rgb8", "--bands", "4,5,6"), card)
  preflight.check_sample([os.path.join(shared_data, S2_L2A)], _args("--config", "sentinel2_l2a"), card)
  with pytest.raises(UsageError, match="uint16 with 4 bands; the profile expects uint8"):
    preflight.check_sample([os.path.join(shared_data, S2_L2A)], _args("--config", "rgb8"), card)

"""Every band comes out (issue 12.2): band counts kept, every band's holes filled.

The real 13-band Sentinel-2 L1C scenes and the 4-band NAIP quarter-quad from
``../shared/data`` (skipped when absent), restored with ``--bands``/a
profile's bands and without, in memory and streamed by rows, with both
``--extra-bands`` methods; the report previews them.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from pipeline import cli, options, report
from pipeline.usage import UsageError
from tests.helpers import read_jsonl, read_raster, read_summary, write_geotiff
from transforms import bands
from transforms.decode import DecodeSpec, decode_pair
from transforms.masks import MaskSpec
from transforms.records import TilePair

S2_L1C = "sentinel2/eolearn_reference_{}.tif"
NAIP = "naip_5m/m_4709963_se_14_1_20190904.tif"
NAIP_BANDS = ("red", "green", "blue", "nir")

# --------------------------------------------------------------------------- units


def test_layout_groups_pad_the_last_group_by_repeating_a_band():
  layout = bands.BandLayout(count=13, model=(3, 2, 1), method="model")
  assert layout.extra == (0, 4, 5, 6, 7, 8, 9, 10, 11, 12)
  assert layout.groups() == [(0, 4, 5), (6, 7, 8), (9, 10, 11), (12, 12, 12)]
  assert layout.describe()["model"] == [4, 3, 2] and layout.describe()["extra_method"] == "model"
  probability = bands.BandLayout(count=5, model=(0, 1, 2), passthrough=(4,))
  assert probability.extra == (3,)
  assert bands.layout_of(3, (0, 1, 2)) is None  # The model takes the image whole.
  assert bands.layout_of(3, (2, 1, 0)) is not None  # Same bands, another order: the output keeps the input's.
  with pytest.raises(ValueError, match="--extra-bands must be one of guided, model"):
    bands.BandLayout(count=4, model=(0, 1, 2), method="nearest")
  with pytest.raises(ValueError, match="bad band layout"):
    bands.BandLayout(count=3, model=(0, 1, 3))


def test_guided_extra_follows_the_restored_bands_and_leaves_the_rest_alone():
  rng = np.random.default_rng(0)
  h, w = 96, 96
  yy, xx = np.mgrid[0:h, 0:w] / 96.0
  model = np.stack([0.3 + 0.2 * np.sin(6 * xx), 0.4 + 0.1 * yy, 0.2 + 0.1 * np.cos(5 * yy)], -1).astype(np.float32)
  extra = (0.5 * model[:, :, :1] + 0.3 * model[:, :, 1:2] + 0.05).astype(np.float32)
  hole = np.zeros((h, w), bool)
  hole[30:60, 20:70] = True
  damaged = extra.copy()
  damaged[hole] = rng.uniform(0, 1, (int(hole.sum()), 1))
  out = bands.guided_extra(damaged, model, ~hole, hole)
  np.testing.assert_array_equal(out[~hole], damaged[~hole])
  # The extra band is a linear function of the model bands: the fill recovers it.
  assert np.abs(out[hole] - extra[hole]).max() < 0.01
  assert np.abs(damaged[hole] - extra[hole]).mean() > 0.1


def test_decode_keeps_every_band_and_picks_the_model_bands(tmp_path):
  a = np.arange(8 * 8 * 5, dtype=np.uint16).reshape(8, 8, 5)
  write_geotiff(str(tmp_path / "five.tif"), a)
  Image.fromarray(np.pad(np.full((2, 2), 255, np.uint8), 3)).save(tmp_path / "five_mask.png")
  pair = TilePair(str(tmp_path / "five.tif"), "five", str(tmp_path / "five_mask.png"))
  tile = decode_pair(pair, DecodeSpec(model_bands=3))  # No --bands: the first three.
  assert tile.image.shape == (8, 8, 3) and tile.full.shape == (8, 8, 5)
  np.testing.assert_array_equal(tile.image, a[:, :, :3])
  assert tile.layout.model == (0, 1, 2) and tile.layout.extra == (3, 4)
  assert tile.notes["bands"] == {
      "count": 5,
      "model": [1, 2, 3],
      "extra": [4, 5],
      "passthrough": [],
      "extra_method": "guided"
  }
  tile = decode_pair(pair, DecodeSpec(model_bands=3, bands=(5, 1, 2), extra_bands="model"))
  np.testing.assert_array_equal(tile.image, a[:, :, [4, 0, 1]])
  assert tile.layout.extra == (2, 3) and tile.layout.method == "model"
  # A probability band is neither restored nor an extra band: it is copied.
  tile = decode_pair(TilePair(str(tmp_path / "five.tif"), "five", None),
                     DecodeSpec(mask=MaskSpec(source="band:5", threshold=100), model_bands=3))
  assert tile.layout.passthrough == (4,) and tile.layout.extra == (3,)
  with pytest.raises(ValueError, match="the image has 2 bands but the model takes 3"):
    write_geotiff(str(tmp_path / "two.tif"), a[:, :, :2])
    decode_pair(TilePair(str(tmp_path / "two.tif"), "two", str(tmp_path / "five_mask.png")), DecodeSpec(model_bands=3))
  with pytest.raises(ValueError, match="--extra-bands must be one of"):
    DecodeSpec(extra_bands="bogus")


def test_extra_bands_flag_is_validated(tmp_path, capsys):
  args, _ = options.parse(["--images", "x", "--masks", "m/{stem}.png", "--output", "o"])
  assert args.extra_bands == "guided"
  args, _ = options.parse(["--images", "x", "--masks", "m/{stem}.png", "--output", "o", "--extra-bands", "model"])
  assert args.extra_bands == "model"
  rc = cli.main([
      "run", "--images",
      str(tmp_path / "*.tif"), "--masks", "{dir}/{stem}.png", "--output",
      str(tmp_path / "o"), "--extra-bands", "nearest"
  ])
  err = capsys.readouterr().err.strip()
  assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err and "--extra-bands" in err
  cfg = tmp_path / "p.yaml"
  cfg.write_text("run:\n  extra_bands: nearest\n")
  with pytest.raises(UsageError, match="extra_bands must be guided or model"):
    options.parse(["--images", "x", "--masks", "m/{stem}.png", "--output", "o", "--config", str(cfg)])
  cfg.write_text("run:\n  extra_bands: model\n")
  args, _ = options.parse(["--images", "x", "--masks", "m/{stem}.png", "--output", "o", "--config", str(cfg)])
  assert args.extra_bands == "model"


# --------------------------------------------------------------------------- real data


def _clm(shared_data, k):
  return np.asarray(Image.open(os.path.join(shared_data, "cloud_masks", "eolearn_clm", f"clm_{k:02d}.png"))) > 0


def _check_output(src, got, hole, sentinel, nodata=None):
  """Band count, dtype, known and no-data bit-identical, every band's holes filled."""
  assert got.shape == src.shape and got.dtype == src.dtype
  np.testing.assert_array_equal(got[~hole], src[~hole])
  if nodata is not None:
    nd = np.all(src == nodata, axis=2)
    np.testing.assert_array_equal(got[nd], src[nd])
  for b in range(src.shape[2]):
    left = got[:, :, b][hole] == sentinel
    assert not left.any(), f"band {b + 1}: {int(left.sum())} hole pixels left at {sentinel}"
    assert not (got[:, :, b][hole] == 0).any() or nodata == 0, f"band {b + 1}: hole pixels at 0"


@pytest.mark.parametrize("method", ["guided", "model"])
def test_sentinel2_13_bands_all_come_out_filled(tmp_path, shared_data, mean_model, method):
  """The real 13-band L1C scenes under --config sentinel2_l1c (--bands 4,3,2): 13 bands out."""
  images = tmp_path / "in"
  images.mkdir()
  cases = {}
  for i, k in enumerate((20, 36)):
    src, _ = read_raster(os.path.join(shared_data, S2_L1C.format(i)))
    hole = _clm(shared_data, k)
    img = src.copy()
    img[hole] = 1.0  # A saturated cloud in every band: no method can read the truth.
    write_geotiff(str(images / f"s2_{i}.tif"), img, crs="EPSG:32633")
    Image.fromarray((hole * 255).astype(np.uint8)).save(images / f"s2_{i}_mask.png")
    cases[f"s2_{i}"] = (img, hole, src)
  out = tmp_path / "out"
  rc = cli.main([
      "run", "--images",
      str(images / "s2_?.tif"), "--masks", "{dir}/{stem}_mask.png", "--output",
      str(out), "--model", mean_model, "--config", "sentinel2_l1c", "--dilate", "0", "--extra-bands", method,
      "--evaluate", "-q"
  ])
  assert rc == 0 and read_summary(str(out))["counts"]["restored"] == 2
  for stem, (img, hole, truth) in cases.items():
    got, _ = read_raster(str(out / "restored" / f"{stem}.tif"))
    assert got.shape[2] == 13
    _check_output(img, got, hole, 1.0)
    assert np.all(got[hole] < 1.0) and np.all(got[hole] > 0.0)
    # Filled near the truth the input no longer holds, in every band (0…1 reflectance).
    psnr = bands.per_band_psnr(got, truth, hole)
    assert all(p > 20 for p in psnr), psnr
    prov, _ = read_raster(str(out / "provenance" / f"{stem}.tif"))
    np.testing.assert_array_equal(prov[:, :, 0] == 1, hole)
  rows = {r["stem"]: r["metrics"] for r in read_jsonl(str(out / "metrics"))}
  for m in rows.values():
    assert m["bands"] == {
        "count": 13,
        "model": [4, 3, 2],
        "extra": [1, 5, 6, 7, 8, 9, 10, 11, 12, 13],
        "passthrough": [],
        "extra_method": method
    }
    assert len(m["psnr_bands"]) == 13  # Against the input itself (--evaluate): its clouds here.
  # The report previews the run made with --bands (the profile's 4,3,2), in the model's bands.
  report.write_report(str(out))
  page = (out / "report.html").read_text()
  assert "Could not preview" not in page and "the model&#x27;s bands 4,3,2 of 13 shown as R,G,B" in page
  assert (out / "report" / "tile00_before.png").exists() and (out / "report" / "tile01_after.png").exists()


def _naip_crop(shared_data, tmp_path, name, h=200, w=260):
  src, _ = read_raster(os.path.join(shared_data, NAIP))
  src = src[:h, :w].copy()
  hole = np.zeros((h, w), bool)
  clm = _clm(shared_data, 36)  # A real cloud shape, scaled up to the crop.
  hole[:] = np.asarray(Image.fromarray(clm).resize((w, h), Image.NEAREST))
  img = src.copy()
  img[hole] = 255  # NAIP has no 255 (nor 0: its declared no-data) anywhere.
  folder = tmp_path / "in"
  folder.mkdir(exist_ok=True)
  write_geotiff(str(folder / f"{name}.tif"), img, crs="EPSG:26914", nodata=0, descriptions=NAIP_BANDS)
  Image.fromarray((hole * 255).astype(np.uint8)).save(folder / f"{name}_mask.png")
  return img, hole


@pytest.mark.parametrize("method", ["guided", "model"])
@pytest.mark.parametrize("streamed", [False, True])
def test_naip_four_bands_without_bands_flag(tmp_path, shared_data, mean_model, method, streamed):
  """4-band NAIP and a 3-band model, no --bands: R,G,B through the model, NIR filled; in memory and streamed."""
  img, hole = _naip_crop(shared_data, tmp_path, "naip")
  # A no-data corner, partly under the cloud: it stays no-data in every band.
  img[:12, :12] = 0
  write_geotiff(str(tmp_path / "in" / "naip.tif"), img, crs="EPSG:26914", nodata=0, descriptions=NAIP_BANDS)
  out = tmp_path / "out"
  argv = [
      "run", "--images",
      str(tmp_path / "in" / "naip.tif"), "--masks", "{dir}/{stem}_mask.png", "--output",
      str(out), "--model", mean_model, "--config", "rgb8", "--extra-bands", method, "-q"
  ]
  if streamed:
    argv += ["--scene-pixels", "10000"]  # 200x260 > 10,000 pixels: streamed by rows.
  assert cli.main(argv) == 0
  got, profile = read_raster(str(out / "restored" / "naip.tif"))
  assert profile["descriptions"] == NAIP_BANDS and profile["nodata"] == 0
  nd = np.all(img == 0, axis=2)
  _check_output(img, got, hole & ~nd, 255, nodata=0)
  assert np.all(got[nd] == 0)
  m = read_jsonl(str(out / "metrics"))[0]["metrics"]
  assert bool(m.get("scene")) == streamed
  assert m["bands"]["model"] == [1, 2, 3] and m["bands"]["extra"] == [4]
  prov, _ = read_raster(str(out / "provenance" / "naip.tif"))
  assert (prov[:, :, 0][nd] == 255).all() and (prov[:, :, 0][hole & ~nd] == 1).all()
  if not streamed:
    report.write_report(str(out))
    assert "Could not preview" not in (out / "report.html").read_text()
    assert (out / "report" / "tile00_before.png").exists()


def test_streamed_scene_with_extra_bands_matches_in_memory(tmp_path, shared_data, mean_model):
  """The guided fill of a streamed scene (by stripes, with a halo) stays close to the whole tile's."""
  img, hole = _naip_crop(shared_data, tmp_path, "naip", h=300, w=300)
  outs = {}
  for streamed in (False, True):
    out = tmp_path / f"out{int(streamed)}"
    argv = [
        "run", "--images",
        str(tmp_path / "in" / "naip.tif"), "--masks", "{dir}/{stem}_mask.png", "--output",
        str(out), "--model", mean_model, "--config", "rgb8", "-q"
    ]
    if streamed:
      argv += ["--scene-pixels", "10000"]
    assert cli.main(argv) == 0
    outs[streamed], _ = read_raster(str(out / "restored" / "naip.tif"))
  a, b = outs[False][:, :, 3][hole].astype(float), outs[True][:, :, 3][hole].astype(float)
  assert np.abs(a - b).mean() < 3.0  # DN of 255.


@pytest.mark.parametrize("method", ["guided", "model"])
def test_engine_restores_every_band_as_the_pipeline_does(tmp_path, shared_data, mean_model, method):
  """``cloudfill serve``'s engine (transforms.engine) gives the pipeline's bytes for a 4-band tile."""
  from model_loader import native
  from transforms.engine import EngineSpec, restore_array
  from transforms.window import WindowSpec
  _naip_crop(shared_data, tmp_path, "naip", h=150, w=170)
  out = tmp_path / "out"
  assert cli.main([
      "run", "--images",
      str(tmp_path / "in" / "naip.tif"), "--masks", "{dir}/{stem}_mask.png", "--output",
      str(out), "--model", mean_model, "--config", "rgb8", "--extra-bands", method, "--no-report", "-q"
  ]) == 0
  got, _ = read_raster(str(out / "restored" / "naip.tif"))
  tile = decode_pair(TilePair(str(tmp_path / "in" / "naip.tif"), "naip", str(tmp_path / "in" / "naip_mask.png")),
                     DecodeSpec(mask=MaskSpec(source="file"), model_bands=3, value_range=(0, 255), extra_bands=method))
  restored, _ = restore_array(tile.image, tile.mask, tile.profile, native.load(mean_model),
                              EngineSpec(WindowSpec(64, 8, (0.0, 255.0)), batch_size=16, takes_context=False),
                              tile.full, tile.layout)
  assert restored.shape == got.shape == (150, 170, 4)
  np.testing.assert_array_equal(restored, got)

"""End to end on the bundled sample (real Landsat 8 crops) and on ../shared/data."""

from __future__ import annotations

import glob
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from pipeline import cli
from tests.conftest import SAMPLE
from tests.helpers import read_jsonl, read_raster, read_summary

pytestmark = pytest.mark.slow


def _run(out, model, *extra, images=None, masks=None):
  argv = [
      "run", "--images", images or os.path.join(SAMPLE, "images", "*.tif"), "--masks", masks or
      os.path.join(SAMPLE, "masks", "{stem}.png"), "--output",
      str(out), "--model", model, "--no-report", *extra
  ]
  return cli.main(argv)


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory, mean_model):
  out = tmp_path_factory.mktemp("sample_run")
  assert _run(out, mean_model, "--evaluate", "--config", "landsat8_l1") == 0
  return str(out)


def test_every_sample_tile_is_restored_and_counts_add_up(sample_run):
  n = len(glob.glob(os.path.join(SAMPLE, "images", "*.tif")))
  s = read_summary(sample_run)
  assert s["matched"] == n == sum(s["counts"].values())
  assert s["counts"] == {"restored": n, "skipped": 0, "failed": 0}
  assert len(os.listdir(os.path.join(sample_run, "restored"))) == n
  assert read_jsonl(os.path.join(sample_run, "failed")) == []


def test_known_pixels_bit_identical_and_georeferencing_kept(sample_run):
  for path in glob.glob(os.path.join(SAMPLE, "images", "*.tif")):
    stem = os.path.splitext(os.path.basename(path))[0]
    src, sp = read_raster(path)
    out, op = read_raster(os.path.join(sample_run, "restored", stem + ".tif"))
    # The config dilates masks by 2 pixels: known = outside the dilated mask.
    from scipy import ndimage
    mask = np.asarray(Image.open(os.path.join(SAMPLE, "masks", stem + ".png"))) > 0
    mask = ndimage.binary_dilation(mask, np.ones((3, 3), bool), iterations=2)
    assert out.dtype == src.dtype and out.shape == src.shape
    np.testing.assert_array_equal(out[~mask], src[~mask])
    assert not np.array_equal(out[mask], src[mask])  # The holes were filled by the model.
    assert op["crs"] == sp["crs"] and op["transform"] == sp["transform"]
    assert op["nodata"] == sp["nodata"] and op["descriptions"] == sp["descriptions"]
    assert op["tags"]["CLOUDFILL_MODEL_VERSION"] == "test-mean-1"


def test_metrics_per_tile(sample_run):
  rows = read_jsonl(os.path.join(sample_run, "metrics"))
  assert len(rows) == len(glob.glob(os.path.join(SAMPLE, "images", "*.tif")))
  for r in rows:
    m = r["metrics"]
    assert r["outcome"] == "restored" and 0 < m["coverage"] < 1
    assert m["holes"] >= 1 and m["largest_hole"] > 0 and m["windows"] >= 1
    assert {"decode", "window_infer", "composite", "write"} <= set(m["seconds"])
    assert m["seam"] is not None and m["seam"] > 0
    assert "block" in m and (m["block"] is None or m["block"] > 0)
    assert np.isfinite(m["psnr"]) and 0 < m["ssim"] <= 1 and m["mae"] > 0 and m["spectral_angle_deg"] >= 0


def test_block_metric_sees_the_mean_fill_models_squares(sample_run):
  # The fixture model fills each 64-pixel window with its own mean: flat squares.
  blocks = [r["metrics"]["block"] for r in read_jsonl(os.path.join(sample_run, "metrics"))]
  assert any(b is not None for b in blocks)
  assert max(b for b in blocks if b is not None) > 1.5, blocks


def test_rerun_writes_nothing_new(sample_run, mean_model):
  before = {f: os.stat(f).st_mtime_ns for f in glob.glob(os.path.join(sample_run, "restored", "*"))}
  assert _run(sample_run, mean_model, "--config", "landsat8_l1") == 0
  after = {f: os.stat(f).st_mtime_ns for f in glob.glob(os.path.join(sample_run, "restored", "*"))}
  assert after == before
  s = read_summary(sample_run)
  assert s["counts"] == {"restored": 0, "skipped": len(before), "failed": 0}


def test_multiprocess_and_tfx_backend_match_single_process(sample_run, mean_model, tmp_path):
  images = os.path.join(str(tmp_path), "in", "*.tif")
  os.makedirs(os.path.dirname(images))
  for p in sorted(glob.glob(os.path.join(SAMPLE, "images", "*.tif")))[:3]:
    shutil.copy(p, os.path.dirname(images))
  outputs = {}
  for name, extra in {
      "multi": ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
      # One model shared by the worker processes: they call it through a proxy.
      "shared": ["--direct_running_mode=multi_processing", "--direct_num_workers=2", "--large-model"],
      "tfx": ["--backend", "tfx"]
  }.items():
    out = tmp_path / name
    assert _run(out, mean_model, "--config", "landsat8_l1", *extra, images=images) == 0
    outputs[name] = out
  for p in glob.glob(images):
    name = os.path.basename(p)
    ref, _ = read_raster(os.path.join(sample_run, "restored", name))
    for label, out in outputs.items():
      got, _ = read_raster(os.path.join(out, "restored", name))
      if label in ("multi", "shared"):
        np.testing.assert_array_equal(got, ref)
      else:  # Same model through serialized tf.Example: equal to float rounding.
        assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1


def test_real_geotiffs_with_real_cloud_masks(shared_data, mean_model, tmp_path):
  """256x256 crops of the Sentinel-2 uint16 scene and the 5 m aerial image under ukis masks."""
  import rasterio
  from rasterio.windows import Window
  masks = sorted(glob.glob(os.path.join(shared_data, "cloud_masks", "ukis", "*.png")))
  assert masks, "no ukis cloud masks"
  src_files = [os.path.join(shared_data, "aerial_5m", "rgbn.tif"), os.path.join(shared_data, "rmnp", "rmnp-rgb.tif")]
  (tmp_path / "img").mkdir()
  (tmp_path / "mask").mkdir()
  n = 0
  for i, f in enumerate(src_files):
    with rasterio.open(f) as src:
      for j, (r, c) in enumerate([(0, 0), (100, 200)]):
        win = Window(c, r, 256, 256)
        arr = src.read(indexes=[1, 2, 3], window=win)
        prof = src.profile.copy()
        prof.update(width=256, height=256, count=3, transform=src.window_transform(win))
        stem = f"s{i}_{j}"
        with rasterio.open(tmp_path / "img" / f"{stem}.tif", "w", **prof) as dst:
          dst.write(arr)
        m = np.asarray(Image.open(masks[(i + j) % len(masks)]).convert("L"))
        Image.fromarray(m[r % 200:r % 200 + 256, c % 200:c % 200 + 256]).save(tmp_path / "mask" / f"{stem}.png")
        n += 1
  out = tmp_path / "out"
  assert _run(out,
              mean_model,
              "--evaluate",
              images=str(tmp_path / "img" / "*.tif"),
              masks=str(tmp_path / "mask" / "{stem}.png")) == 0
  s = read_summary(str(out))
  assert s["counts"]["restored"] == n
  for stem in (f"s{i}_{j}" for i in range(2) for j in range(2)):
    src, sp = read_raster(str(tmp_path / "img" / f"{stem}.tif"))
    got, gp = read_raster(str(out / "restored" / f"{stem}.tif"))
    m = np.asarray(Image.open(tmp_path / "mask" / f"{stem}.png")) > 0
    np.testing.assert_array_equal(got[~m], src[~m])
    assert gp["crs"] == sp["crs"] and gp["nodata"] == sp["nodata"]


def test_beam_counters_count_every_stage(mean_model, tmp_path):
  from apache_beam.metrics.metric import MetricsFilter
  from pipeline.run import run
  images = sorted(glob.glob(os.path.join(SAMPLE, "images", "*.tif")))[:2]
  (tmp_path / "in").mkdir()
  for p in images:
    shutil.copy(p, tmp_path / "in")
  result = run([
      "--images",
      str(tmp_path / "in" / "*.tif"), "--masks",
      os.path.join(SAMPLE, "masks", "{stem}.png"), "--output",
      str(tmp_path / "out"), "--model", mean_model
  ])
  result.wait_until_finish()
  counters = {
      c.key.metric.name: c.committed
      for c in result.metrics().query(MetricsFilter().with_namespace("cloudfill"))["counters"]
  }
  assert counters["matched"] == counters["decoded"] == counters["composited"] == counters["restored"] == 2
  assert "windows_without_tile" not in counters
  assert counters["windows"] == counters["windows_inferred"] > 2
  dists = {
      d.key.metric.name: d.committed
      for d in result.metrics().query(MetricsFilter().with_namespace("cloudfill"))["distributions"]
  }
  assert dists["decode_ms"].count == 2 and dists["write_ms"].count == 2


def test_reference_template_scores_against_a_clear_acquisition(sample_run, mean_model, tmp_path):
  """The sample is clear, so the input itself is a valid reference: same figures as --evaluate."""
  out = tmp_path / "ref"
  assert _run(out, mean_model, "--config", "landsat8_l1", "--reference", os.path.join(SAMPLE, "images",
                                                                                      "{stem}.tif")) == 0
  by_ref = {r["stem"]: r["metrics"] for r in read_jsonl(str(out / "metrics"))}
  by_eval = {r["stem"]: r["metrics"] for r in read_jsonl(os.path.join(sample_run, "metrics"))}
  assert set(by_ref) == set(by_eval)
  for stem, m in by_ref.items():
    assert m["psnr"] == pytest.approx(by_eval[stem]["psnr"], abs=1e-6)
    assert m["ssim"] == pytest.approx(by_eval[stem]["ssim"], abs=1e-6)


def test_up_to_date_means_same_input_path_time_and_mask(mean_model, tmp_path):
  """An edited mask, or another file under the same name (even with an older
  time, as `cp -p` leaves it), is redone; an unchanged input is skipped."""
  from transforms.incremental import is_up_to_date
  from transforms.records import TilePair
  from model_loader.locate import read_card
  stem = "LC08_224078_20200518_r300_c200"
  for folder in ("a", "b", "masks"):
    (tmp_path / folder).mkdir()
  shutil.copy(os.path.join(SAMPLE, "images", stem + ".tif"), tmp_path / "a" / (stem + ".tif"))
  shutil.copy(os.path.join(SAMPLE, "masks", stem + ".png"), tmp_path / "masks" / (stem + ".png"))
  out = tmp_path / "out"
  assert _run(out,
              mean_model,
              "--config",
              "landsat8_l1",
              images=str(tmp_path / "a" / "*.tif"),
              masks=str(tmp_path / "masks" / "{stem}.png")) == 0
  card = read_card(mean_model)

  def current(folder):
    path = str(tmp_path / folder / (stem + ".tif"))
    pair = TilePair(path, stem, str(tmp_path / "masks" / (stem + ".png")), os.stat(path).st_mtime)
    return is_up_to_date(pair, str(out), card.version, card.weights_sha256)

  assert current("a")
  # Another file under the same name, older than the output's source.
  shutil.copy(os.path.join(SAMPLE, "images", "LC08_224078_20200518_r800_c300.tif"), tmp_path / "b" / (stem + ".tif"))
  os.utime(tmp_path / "b" / (stem + ".tif"), (1e9, 1e9))
  assert not current("b")
  os.utime(tmp_path / "a" / (stem + ".tif"), (1e9, 1e9))  # The same path, now with an older time.
  assert not current("a")
  assert _run(out,
              mean_model,
              "--config",
              "landsat8_l1",
              "--overwrite",
              images=str(tmp_path / "a" / "*.tif"),
              masks=str(tmp_path / "masks" / "{stem}.png")) == 0
  assert current("a")
  later = os.stat(out / "restored" / (stem + ".tif")).st_mtime + 5
  os.utime(tmp_path / "masks" / (stem + ".png"), (later, later))  # The mask edited after the output.
  assert not current("a")

"""End to end: guides on another grid, missing, cloudy, not overlapping, bad templates."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import cli
from tests.helpers import cloud_mask, read_jsonl, read_raster, read_summary, write_geotiff, write_png

pytestmark = pytest.mark.slow

T0 = (30.0, 0.0, 746385.0, 0.0, -30.0, -2785995.0)  # the target's grid (EPSG:32621)
H, W = 160, 200


def field(e, n):
  """Ground in map coordinates (UTM 21): structure a push-pull fill cannot invent."""
  return (9000 + 2500 * np.sin(e / 450.0) + 2000 * np.cos(n / 380.0) + 1500 * np.sin((e - n) / 250.0))


def target():
  e = T0[2] + (np.arange(W) + 0.5) * 30.0
  n = T0[5] - (np.arange(H) + 0.5) * 30.0
  f = field(e[None, :], n[:, None])
  return np.stack([f, 0.9 * f + 800, 1.1 * f - 500], -1).astype(np.uint16)


def write_guide_4326(path, gain=0.7, offset=1500.0, shift_deg=0.0, clouds=None):
  """The same ground seen on another date (gain/offset) on a lon/lat grid at ~20 m."""
  from rasterio.warp import transform, transform_bounds
  left, bottom, right, top = transform_bounds("EPSG:32621", "EPSG:4326", T0[2], T0[5] - H * 30.0, T0[2] + W * 30.0,
                                              T0[5])
  res = 0.0002
  left, right = left - 0.002 + shift_deg, right + 0.002 + shift_deg
  top, bottom = top + 0.002, bottom - 0.002
  gw, gh = int((right - left) / res), int((top - bottom) / res)
  lon = left + (np.arange(gw) + 0.5) * res
  lat = top - (np.arange(gh) + 0.5) * res
  lon2, lat2 = np.meshgrid(lon, lat)
  e, n = transform("EPSG:4326", "EPSG:32621", lon2.ravel(), lat2.ravel())
  f = field(np.asarray(e).reshape(gh, gw), np.asarray(n).reshape(gh, gw))
  g = np.stack([f, 0.9 * f + 800, 1.1 * f - 500], -1) * gain + offset
  g = g.astype(np.uint16)
  if clouds is not None:
    g[clouds(gh, gw)] = 0
  write_geotiff(path, g, nodata=0, crs="EPSG:4326", transform=(res, 0.0, left, 0.0, -res, top))
  return path


@pytest.fixture()
def scene(tmp_path):
  img = target()
  mask = cloud_mask(H, W, seed=11, coverage=0.4)
  write_geotiff(str(tmp_path / "img" / "t.tif"), img, nodata=0, transform=T0)
  write_png(str(tmp_path / "mask" / "t.png"), mask.astype(np.uint8) * 255)
  return tmp_path, img, mask


def _run(tmp_path, model, name, *extra):
  out = tmp_path / name
  code = cli.main([
      "run", "--images",
      str(tmp_path / "img" / "*.tif"), "--masks",
      str(tmp_path / "mask" / "{stem}.png"), "--output",
      str(out), "--model", model, "--no-report", "--no-preview", "--evaluate", *extra
  ])
  return code, out


def test_guide_on_another_crs_and_resolution_is_aligned_and_used(scene, context_model):
  tmp_path, img, mask = scene
  write_guide_4326(str(tmp_path / "guide" / "t.tif"))
  code, plain = _run(tmp_path, context_model, "plain")
  assert code == 0
  code, guided = _run(tmp_path, context_model, "guided", "--guide", str(tmp_path / "nothere" / "{stem}.tif"), "--guide",
                      str(tmp_path / "guide" / "{stem}.tif"))
  assert code == 0
  (p,) = read_jsonl(str(plain / "metrics"))
  (g,) = read_jsonl(str(guided / "metrics"))
  assert g["metrics"]["guided"] is True and g["metrics"]["guide_path"].endswith("guide/t.tif")
  assert g["metrics"]["guided_pixels"] > 0.9 * mask.sum()
  # The guide, mapped from another date's radiometry and another grid, beats the unguided fill.
  assert g["metrics"]["psnr"] > p["metrics"]["psnr"] + 6, (g["metrics"]["psnr"], p["metrics"]["psnr"])
  res, _ = read_raster(str(guided / "restored" / "t.tif"))
  np.testing.assert_array_equal(res[~mask], img[~mask])
  assert read_summary(str(guided))["guide"] == {"guided": 1, "unguided": 0}


def test_guided_scene_streamed_by_windows(scene, context_model):
  tmp_path, img, mask = scene
  write_guide_4326(str(tmp_path / "guide" / "t.tif"))
  code, tile = _run(tmp_path, context_model, "tile", "--guide", str(tmp_path / "guide" / "{stem}.tif"))
  assert code == 0
  code, streamed = _run(tmp_path, context_model, "scene", "--scene-pixels", "10000", "--guide",
                        str(tmp_path / "guide" / "{stem}.tif"))
  assert code == 0
  (t,) = read_jsonl(str(tile / "metrics"))
  (s,) = read_jsonl(str(streamed / "metrics"))
  assert s["metrics"]["scene"] is True and s["metrics"]["guided"] is True
  # Fitted per window rather than per tile: close, not equal.
  assert s["metrics"]["psnr"] > t["metrics"]["psnr"] - 3, (s["metrics"]["psnr"], t["metrics"]["psnr"])
  res, _ = read_raster(str(streamed / "restored" / "t.tif"))
  np.testing.assert_array_equal(res[~mask], img[~mask])


def test_missing_guide_is_restored_unguided_and_counted(scene, mean_model):
  tmp_path, _, _ = scene
  code, out = _run(tmp_path, mean_model, "out", "--guide", str(tmp_path / "none" / "{stem}.tif"))
  assert code == 0
  (m,) = read_jsonl(str(out / "metrics"))
  assert m["metrics"]["guided"] is False and m["metrics"]["guide"] == "missing"
  s = read_summary(str(out))
  assert s["counts"]["restored"] == 1 and s["guide"] == {"guided": 0, "unguided": 1}


def test_guide_cloudy_over_every_hole_is_unguided(scene, context_model):
  tmp_path, _, _ = scene
  write_guide_4326(str(tmp_path / "guide" / "t.tif"), clouds=lambda h, w: np.ones((h, w), bool))
  code, out = _run(tmp_path, context_model, "out", "--guide", str(tmp_path / "guide" / "{stem}.tif"))
  assert code == 0
  (m,) = read_jsonl(str(out / "metrics"))
  assert m["metrics"]["guided"] is False and "cloudy" in m["metrics"]["guide"]


def test_guide_masks_hide_the_guides_clouds(scene, context_model):
  tmp_path, _, _ = scene
  g = write_guide_4326(str(tmp_path / "guide" / "t.tif"))
  import rasterio
  with rasterio.open(g) as src:
    gm = np.zeros((src.height, src.width), np.uint8)
  gm[:, :gm.shape[1] // 2] = 1  # the guide's west half is cloudy
  write_png(str(tmp_path / "guide" / "t_clouds.png"), gm * 255)  # no georeferencing: the guide's grid
  code, out = _run(tmp_path, context_model, "out", "--guide", str(tmp_path / "guide" / "{stem}.tif"), "--guide-masks",
                   "{dir}/{stem}_clouds.png")
  assert code == 0
  (m,) = read_jsonl(str(out / "metrics"))
  assert m["metrics"]["guided"] is True
  assert 0.2 * m["metrics"]["guided_pixels"] < m["metrics"]["guided_pixels"] < 0.8 * (m["metrics"]["coverage"] * H * W)


def test_guide_that_does_not_overlap_is_a_dead_letter(scene, mean_model):
  tmp_path, _, _ = scene
  write_guide_4326(str(tmp_path / "guide" / "t.tif"), shift_deg=1.0)
  code, out = _run(tmp_path, mean_model, "out", "--guide", str(tmp_path / "guide" / "{stem}.tif"))
  assert code == 3
  s = read_summary(str(out))
  assert s["counts"] == {"restored": 0, "skipped": 0, "failed": 1}
  (d,) = read_jsonl(str(out / "failed"))
  assert d["stage"] == "guide" and "does not overlap" in d["reason"]


def test_guide_with_other_bands_is_a_dead_letter(scene, mean_model):
  tmp_path, img, _ = scene
  write_geotiff(str(tmp_path / "guide" / "t.tif"), np.concatenate([img, img[:, :, :1]], -1), nodata=0, transform=T0)
  code, out = _run(tmp_path, mean_model, "out", "--guide", str(tmp_path / "guide" / "{stem}.tif"))
  assert code == 3
  (d,) = read_jsonl(str(out / "failed"))
  assert d["stage"] == "guide" and "4 bands" in d["reason"] and "--bands" in d["reason"]


@pytest.mark.parametrize("template", ["{stem}_{when}.tif", "{date}/{stem}.tif", "{stem.tif"])
def test_unresolvable_guide_template_exits_2_before_any_work(scene, mean_model, template, capsys):
  tmp_path, _, _ = scene
  code, out = _run(tmp_path, mean_model, "out", "--guide", str(tmp_path / template))
  assert code == 2 and not out.exists()
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "guide template" in err[0]


def test_context_model_inputs_native_tfx_and_tflite(tmp_path, context_model, mean_model):
  """Both backends feed the five inputs a context model declares, and only
  image/mask to an old one."""
  from model_loader import native
  m = native.load(context_model)
  assert m.input_names == ("context", "guide", "guide_mask", "image", "mask")
  assert native.load(mean_model).input_names == ("image", "mask")
  img = np.full((1, 64, 64, 3), 0.2, np.float32)
  mask = np.zeros((1, 64, 64, 1), np.float32)
  mask[:, 10:20, 10:20] = 1
  ctx = np.full_like(img, 0.6)
  guide = np.full_like(img, 0.8)
  out = m(img, mask, context=ctx, guide=guide, guide_mask=np.zeros_like(mask))
  np.testing.assert_allclose(out[0, 15, 15], 0.7)  # (context + guide) / 2 in the hole
  np.testing.assert_allclose(out[0, 0, 0], 0.2)  # known pixel as it was
  np.testing.assert_allclose(m(img, mask)[0, 15, 15], 0.2)  # neutral inputs: context = image
  # tfx (serving_default) and tflite (the model's TFLite file): the same tile, the same output.
  tmp = tmp_path
  img_t = target()
  mask_t = cloud_mask(H, W, seed=3, coverage=0.3)
  write_geotiff(str(tmp / "img" / "t.tif"), img_t, nodata=0, transform=T0)
  write_png(str(tmp / "mask" / "t.png"), mask_t.astype(np.uint8) * 255)
  write_guide_4326(str(tmp / "guide" / "t.tif"))
  outs = {}
  for backend in ("native", "tfx", "tflite"):
    code, out = _run(tmp, context_model, backend, "--backend", backend, "--guide", str(tmp / "guide" / "{stem}.tif"))
    assert code == 0
    outs[backend] = read_raster(str(out / "restored" / "t.tif"))[0].astype(int)
  assert np.abs(outs["native"] - outs["tfx"]).max() <= 1
  assert np.abs(outs["native"] - outs["tflite"]).max() <= 1
  assert not np.array_equal(outs["native"], img_t)  # the guide reached the fill on every backend


def test_guided_scene_fills_on_threads_equal_the_fills_on_one(scene, context_model, monkeypatch):
  """The streamed guided fills run on several threads (transforms.parallel) and change no pixel."""
  import threading

  from transforms import parallel, regression
  tmp_path, img, mask = scene
  write_guide_4326(str(tmp_path / "guide" / "t.tif"))
  fill_threads = []
  fitted = regression.guided_fill

  def recording(*args, **kwargs):
    fill_threads.append(threading.current_thread().name)
    return fitted(*args, **kwargs)

  monkeypatch.setattr(regression, "guided_fill", recording)
  outputs = {}
  for threads in (1, 3):
    monkeypatch.setattr(parallel, "default_threads", lambda n=threads: n)
    fill_threads.clear()
    code, out = _run(tmp_path, context_model, f"threads{threads}", "--scene-pixels", "10000", "--guide",
                     str(tmp_path / "guide" / "{stem}.tif"))
    assert code == 0
    (m,) = read_jsonl(str(out / "metrics"))
    assert m["metrics"]["scene"] is True and m["metrics"]["guided"] is True
    assert len(fill_threads) > 4  # one guided fill per window with a hole
    on_pool = {name.startswith("cloudfill-fill") for name in fill_threads}
    assert on_pool == ({False} if threads == 1 else {True}), fill_threads
    outputs[threads], _ = read_raster(str(out / "restored" / "t.tif"))
  np.testing.assert_array_equal(outputs[1], outputs[3])
  np.testing.assert_array_equal(outputs[3][~mask], img[~mask])
  assert (outputs[3][mask] > 0).all()  # filled, never left at zero

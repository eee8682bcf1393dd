"""End to end: context beyond the window, the footprint, --max-fill-distance, previews."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from pipeline import cli
from tests.helpers import cloud_mask, read_jsonl, read_raster, read_summary, write_geotiff, write_png
from transforms import scenes

pytestmark = pytest.mark.slow


def smooth_field(h, w, seed, lo=6000, hi=20000, bands=3):
  rng = np.random.default_rng(seed)
  f = np.stack([ndimage.gaussian_filter(rng.standard_normal((h, w)), 12) for _ in range(bands)], -1)
  f = (f - f.min()) / (f.max() - f.min())
  return (lo + (hi - lo) * f).astype(np.uint16)


def run(tmp_path, model, name, *extra, images="img/*.tif", masks="mask/{stem}.png"):
  out = tmp_path / name
  argv = ["run", "--images", str(tmp_path / images), "--output", str(out), "--model", model, "--no-report", *extra]
  if masks:
    argv += ["--masks", str(tmp_path / masks)]
  return cli.main(argv), out


@pytest.mark.parametrize("which", ["mean_model", "context_model"])
def test_footprint_is_bit_identical_and_never_filled(tmp_path, which, request):
  model = request.getfixturevalue(which)
  h, w = 150, 170
  img = smooth_field(h, w, 1)
  yy, xx = np.mgrid[:h, :w]
  corner = xx + yy < 60  # the zero fill of an L1 scene
  img[corner] = 0
  mask = cloud_mask(h, w, seed=2, coverage=0.3) | (np.abs(xx + yy - 60) < 8)  # also over the corner edge
  write_geotiff(str(tmp_path / "img" / "a.tif"), img)  # declares no no-data
  write_png(str(tmp_path / "mask" / "a.png"), mask.astype(np.uint8) * 255)
  code, out = run(tmp_path, model, "out", "--nodata", "0", "--nodata-border", "--evaluate")
  assert code == 0
  res, _ = read_raster(str(out / "restored" / "a.tif"))
  np.testing.assert_array_equal(res[corner], img[corner])  # no-data: exactly as it went in
  np.testing.assert_array_equal(res[~mask], img[~mask])  # known: bit-identical
  hole = mask & ~corner
  assert (res[hole] > 0).all()  # filled, never with 0
  (m,) = read_jsonl(str(out / "metrics"))
  assert m["metrics"]["nodata_pixels"] == int(corner.sum()) and m["metrics"]["unfilled"] == 0
  # Filled from valid ground only: next to the corner the fill is as bright as the ground.
  edge = hole & (np.abs(xx + yy - 60) < 8)
  assert res[edge].mean() > 0.8 * img[~mask & ~corner].mean()
  prev = np.asarray(Image.open(out / "preview" / "a.png"))
  assert prev.shape == (h, w, 3) and prev.dtype == np.uint8


def test_mask_over_nodata_only_is_skipped(tmp_path, mean_model):
  img = smooth_field(80, 80, 3)
  img[:20] = 0
  mask = np.zeros((80, 80), np.uint8)
  mask[:10] = 255
  write_geotiff(str(tmp_path / "img" / "b.tif"), img, nodata=0)
  write_png(str(tmp_path / "mask" / "b.png"), mask)
  code, out = run(tmp_path, mean_model, "out")
  assert code == 0
  s = read_summary(str(out))
  assert s["counts"] == {"restored": 0, "skipped": 1, "failed": 0}
  assert any("only no-data" in k for k in s["reasons"])
  assert not os.path.exists(out / "restored" / "b.tif")


def test_max_fill_distance_abstains_and_counts(tmp_path, context_model):
  h, w = 120, 160
  img = smooth_field(h, w, 4)
  mask = np.zeros((h, w), bool)
  mask[20:100, 30:130] = True
  want_far = mask & (ndimage.distance_transform_edt(mask) > 10)
  write_geotiff(str(tmp_path / "img" / "nd.tif"), img, nodata=0)
  write_geotiff(str(tmp_path / "img" / "plain.tif"), img)
  for stem in ("nd", "plain"):
    write_png(str(tmp_path / "mask" / f"{stem}.png"), mask.astype(np.uint8) * 255)
  code, out = run(tmp_path, context_model, "out", "--max-fill-distance", "10")
  assert code == 0
  got = {r["stem"]: r["metrics"] for r in read_jsonl(str(out / "metrics"))}
  nd, _ = read_raster(str(out / "restored" / "nd.tif"))
  assert got["nd"]["unfilled"] == int(want_far.sum()) and got["nd"]["unfilled_as"] == "nodata"
  assert (nd[want_far] == 0).all() and (nd[mask & ~want_far] > 0).all()
  plain, _ = read_raster(str(out / "restored" / "plain.tif"))
  np.testing.assert_array_equal(plain[want_far], img[want_far])  # no no-data value: kept as it was
  assert "input unchanged" in got["plain"]["unfilled_as"]
  assert read_summary(str(out))["unfilled_pixels"] == 2 * int(want_far.sum())


@pytest.mark.parametrize("which", ["mean_model", "context_model"])
def test_known_pixels_in_one_corner_fill_everything_without_zeros(tmp_path, which, request):
  img = np.full((300, 300, 3), 12000, np.uint16)
  img[:30, :30] = np.array([9000, 11000, 13000], np.uint16)
  mask = np.ones((300, 300), np.uint8) * 255
  mask[:30, :30] = 0
  write_geotiff(str(tmp_path / "img" / "c.tif"), img)
  write_png(str(tmp_path / "mask" / "c.png"), mask)
  code, out = run(tmp_path, request.getfixturevalue(which), "out")
  assert code == 0
  res, _ = read_raster(str(out / "restored" / "c.tif"))
  assert (res > 0).all()
  # Far from the corner the fill is the corner's colour, not a window's invention.
  np.testing.assert_allclose(res[200:, 200:].reshape(-1, 3).mean(0), [9000, 11000, 13000], rtol=0.02)


def test_scene_context_matches_tile_context(tmp_path, context_model, monkeypatch):
  h, w = 1300, 1100  # larger than 1024: the scene's low-resolution pass is reduced by 2
  img = smooth_field(h, w, 5)
  mask = cloud_mask(h, w, seed=6, coverage=0.35)
  write_geotiff(str(tmp_path / "img" / "s.tif"), img, nodata=0)
  write_png(str(tmp_path / "mask" / "s.png"), mask.astype(np.uint8) * 255)
  monkeypatch.setattr(scenes, "STRIPE_ROWS", 256)
  code, tile_out = run(tmp_path, context_model, "tile", "--evaluate")
  assert code == 0
  code, scene_out = run(tmp_path, context_model, "scene", "--evaluate", "--scene-pixels", "1000000")
  assert code == 0
  a, _ = read_raster(str(tile_out / "restored" / "s.tif"))
  b, _ = read_raster(str(scene_out / "restored" / "s.tif"))
  np.testing.assert_array_equal(b[~mask], img[~mask])
  diff = np.abs(a.astype(np.float64) - b.astype(np.float64))[mask] / 65535
  assert diff.mean() < 0.005, diff.mean()  # the fill itself is ~0.017 from the truth
  (m,) = read_jsonl(str(scene_out / "metrics"))
  (t,) = read_jsonl(str(tile_out / "metrics"))
  assert m["metrics"]["scene"] is True
  assert abs(m["metrics"]["psnr"] - t["metrics"]["psnr"]) < 0.5
  assert m["metrics"]["seam"] < 1.5 * t["metrics"]["seam"]  # no steps at the cloud edges
  # The scene's quicklook was written before its output.
  prev = scene_out / "preview" / "s.png"
  assert os.stat(prev).st_mtime_ns <= os.stat(scene_out / "restored" / "s.tif").st_mtime_ns
  assert max(np.asarray(Image.open(prev)).shape[:2]) <= 1024


def test_preview_of_a_tile_is_written_before_its_output(tmp_path, mean_model):
  img = smooth_field(100, 90, 8)
  write_geotiff(str(tmp_path / "img" / "p.tif"), img)
  write_png(str(tmp_path / "mask" / "p.png"), cloud_mask(100, 90, seed=1).astype(np.uint8) * 255)
  code, out = run(tmp_path, mean_model, "out")
  assert code == 0
  prev, res = out / "preview" / "p.png", out / "restored" / "p.tif"
  assert os.stat(prev).st_mtime_ns <= os.stat(res).st_mtime_ns
  code, out2 = run(tmp_path, mean_model, "out2", "--no-preview")
  assert code == 0 and not os.path.exists(out2 / "preview")


def test_precut_tiles_take_context_from_their_neighbours(tmp_path, context_model):
  """A cloud across tile borders: the tiles' fills agree with the whole image's."""
  n, t = 320, 160
  img = smooth_field(n, n, 9)
  yy, xx = np.mgrid[:n, :n]
  mask = (np.abs(yy - n // 2) < 45) | (np.abs(xx - n // 2) < 45)  # a cross over every border
  write_geotiff(str(tmp_path / "whole" / "img" / "w.tif"), img, nodata=0)
  write_png(str(tmp_path / "whole" / "mask" / "w.png"), mask.astype(np.uint8) * 255)
  t0 = (30.0, 0.0, 746385.0, 0.0, -30.0, -2785995.0)
  for r in range(0, n, t):
    for c in range(0, n, t):
      tr = (30.0, 0.0, t0[2] + 30.0 * c, 0.0, -30.0, t0[5] - 30.0 * r)
      write_geotiff(str(tmp_path / "cut" / "img" / f"t{r}_{c}.tif"), img[r:r + t, c:c + t], nodata=0, transform=tr)
      write_png(str(tmp_path / "cut" / "mask" / f"t{r}_{c}.png"), mask[r:r + t, c:c + t].astype(np.uint8) * 255)
  code, whole = run(tmp_path, context_model, "out_whole", images="whole/img/*.tif", masks="whole/mask/{stem}.png")
  assert code == 0
  ref, _ = read_raster(str(whole / "restored" / "w.tif"))
  errs = {}
  for name, extra in {"alone": ["--neighbour-margin", "0"], "neighbours": []}.items():
    code, out = run(tmp_path, context_model, "out_" + name, *extra, images="cut/img/*.tif", masks="cut/mask/{stem}.png")
    assert code == 0
    mosaic = np.zeros_like(img)
    for r in range(0, n, t):
      for c in range(0, n, t):
        mosaic[r:r + t, c:c + t] = read_raster(str(out / "restored" / f"t{r}_{c}.tif"))[0]
    np.testing.assert_array_equal(mosaic[~mask], img[~mask])
    # The step across the tile borders inside the cloud.
    step = np.abs(mosaic[:, t].astype(float) - mosaic[:, t - 1])[mask[:, t]].mean()
    errs[name] = (np.abs(mosaic.astype(float) - ref)[mask].mean(), step)
    metrics = read_jsonl(str(out / "metrics"))
    assert len(metrics) == 4
    if name == "neighbours":
      assert all(m["metrics"].get("neighbours") for m in metrics)
  whole_step = np.abs(ref[:, t].astype(float) - ref[:, t - 1])[mask[:, t]].mean()
  # Measured: fill 307 DN from the whole image's alone, 36 with neighbours; the step at the
  # border 813 DN alone, 30 with neighbours, 8 in the whole image.
  assert errs["neighbours"][0] < 0.2 * errs["alone"][0], errs
  assert errs["neighbours"][1] < 0.05 * errs["alone"][1], (errs, whole_step)

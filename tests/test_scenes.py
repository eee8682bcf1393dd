"""Large scenes take the streamed path and come out as the in-memory path would."""

from __future__ import annotations

import os

import numpy as np
import pytest

from pipeline import cli
from tests.helpers import cloud_mask, read_jsonl, read_raster, read_summary, write_geotiff, write_png
from transforms import scenes

pytestmark = pytest.mark.slow


def test_streamed_scene_equals_in_memory_tile(tmp_path, mean_model, monkeypatch):
  rng = np.random.default_rng(7)
  h, w = 300, 420
  base = rng.integers(3000, 9000, (h // 10 + 1, w // 10 + 1, 3))
  img = np.kron(base, np.ones((10, 10, 1)))[:h, :w].astype(np.uint16)
  write_geotiff(str(tmp_path / "img" / "scene.tif"), img, nodata=0, descriptions=["B2", "B3", "B4"])
  mask = cloud_mask(h, w, seed=5, coverage=0.3)
  write_png(str(tmp_path / "mask" / "scene.png"), mask.astype(np.uint8) * 255)
  monkeypatch.setattr(scenes, "STRIPE_ROWS", 64)  # Several stripes, windows across them.
  outs = {}
  for name, extra in {"tile": [], "scene": ["--scene-pixels", "1000"]}.items():
    out = tmp_path / name
    assert cli.main([
        "run", "--images",
        str(tmp_path / "img" / "*.tif"), "--masks",
        str(tmp_path / "mask" / "{stem}.png"), "--output",
        str(out), "--model", mean_model, "--no-report", "--evaluate", *extra
    ]) == 0
    outs[name] = out
  a, ap = read_raster(str(outs["tile"] / "restored" / "scene.tif"))
  b, bp = read_raster(str(outs["scene"] / "restored" / "scene.tif"))
  np.testing.assert_array_equal(b[~mask], img[~mask])
  assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
  assert bp["crs"] == ap["crs"] and bp["transform"] == ap["transform"] and bp["nodata"] == 0
  assert bp["descriptions"] == ("B2", "B3", "B4")
  (m,) = read_jsonl(str(outs["scene"] / "metrics"))
  assert m["metrics"]["scene"] is True and m["metrics"]["windows"] > 4
  (t,) = read_jsonl(str(outs["tile"] / "metrics"))
  assert abs(m["metrics"]["psnr"] - t["metrics"]["psnr"]) < 0.05
  # The block metric, summed stripe by stripe for the scene, reads what the whole tile reads.
  assert abs(m["metrics"]["block"] - t["metrics"]["block"]) < 0.25 * t["metrics"]["block"]
  assert read_summary(str(outs["scene"]))["counts"]["restored"] == 1
  assert not os.path.exists(outs["scene"] / scenes.WORK_DIR / "scene")  # Spills cleaned up.

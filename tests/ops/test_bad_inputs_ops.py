"""Odd inputs of issue #5 beside good tiles, in one run: each ends accounted for.

tests/test_bad_inputs.py covers corrupt bytes, truncated TIFFs, missing
masks, size mismatches, all-/no-cloud masks, NaN and band counts. These are
the extra cases: a zero-byte file, a TIFF with a bogus header, 1x1 images,
100,000x1 and 1x100,000 strips, masks stored as uint16 and float32, a path
with spaces and non-ASCII characters, symlink loops, and a truncated scene
large enough for the streamed large-scene path. Masks are GeoTIFFs
here (``{stem}.tif``), so they can carry any dtype.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from pipeline.summary import EXIT_SOME_FAILED
from tests.helpers import cloud_mask, read_jsonl, read_raster, read_summary, write_geotiff
from tests.ops.opslib import cloudfill, read_json

pytestmark = pytest.mark.slow  # a full run over every odd input

UNICODE = "scène nuageuse ☁ 01"
STRIP = np.zeros((1, 100_000), bool)
STRIP[0, 5_000:5_100] = True
STRIP[0, 70_000:70_050] = True

EXPECTED = {  # stem -> (outcome, stage, phrases of the reason, any of them)
    "zero_byte": ("failed", "decode", ("empty file", "not a readable")),
    "bogus_header": ("failed", "decode", ("not a readable TIFF",)),
    "one_px_cloud": ("failed", "validate", ("covers every pixel",)),
    "one_px_clear": ("skipped", "validate", ("no missing pixel",)),
    "loop_a": ("failed", "match", ("Too many levels of symbolic links",)),
    "loop_b": ("failed", "match", ("Too many levels of symbolic links",)),
    "self_loop": ("failed", "match", ("Too many levels of symbolic links",)),
    "truncated_scene": ("failed", "decode", ("not a readable TIFF", "IReadBlock failed")),
}
RESTORED = ("good", "strip_wide", "strip_tall", "mask_uint16", "mask_float", UNICODE)


@pytest.fixture(scope="module")
def odd_run(tmp_path_factory, mean_model):
  d = tmp_path_factory.mktemp("odd")
  img, msk = str(d / "img"), str(d / "mask")
  rng = np.random.default_rng(5)
  arrays, masks = {}, {}

  def tile(stem, h, w, mask=None, mask_dtype=np.uint8):
    a = rng.integers(2000, 9000, (h, w, 3)).astype(np.uint16)
    write_geotiff(os.path.join(img, f"{stem}.tif"), a)
    m = cloud_mask(h, w, seed=len(stem)) if mask is None else mask
    if mask_dtype == np.float32:  # Cloud probabilities: 0.0 clear, 0.8 cloud.
      stored = np.where(m, 0.8, 0.0).astype(np.float32)
    elif mask_dtype == np.uint16:
      stored = m.astype(np.uint16) * 1000
    else:
      stored = m.astype(np.uint8) * 255
    write_geotiff(os.path.join(msk, f"{stem}.tif"), stored[:, :, None])
    arrays[stem], masks[stem] = a, m

  tile("good", 96, 96)
  tile("one_px_cloud", 1, 1, mask=np.ones((1, 1), bool))
  tile("one_px_clear", 1, 1, mask=np.zeros((1, 1), bool))
  tile("strip_wide", 1, 100_000, mask=STRIP)
  tile("strip_tall", 100_000, 1, mask=STRIP.T)
  tile("mask_uint16", 80, 80, mask_dtype=np.uint16)
  tile("mask_float", 80, 80, mask_dtype=np.float32)
  tile(UNICODE, 64, 64)
  blank = np.zeros((8, 8, 1), np.uint8)
  with open(os.path.join(img, "zero_byte.tif"), "wb"):
    pass
  write_geotiff(os.path.join(msk, "zero_byte.tif"), blank)
  with open(os.path.join(img, "bogus_header.tif"), "wb") as f:
    f.write(b"II*\x00\xff\xff\xff\x7f" + rng.bytes(400))  # First directory past the end.
  write_geotiff(os.path.join(msk, "bogus_header.tif"), blank)
  # A scene large enough for the streamed path (over the default --scene-pixels, 2048x2048), cut short.
  side = 4200
  scene = np.repeat(((np.add.outer(np.arange(side), np.arange(side)) % 5000) + 1000).astype(np.uint16)[:, :, None],
                    3,
                    axis=2)
  path = os.path.join(img, "truncated_scene.tif")
  with rasterio.open(path,
                     "w",
                     driver="GTiff",
                     height=side,
                     width=side,
                     count=3,
                     dtype="uint16",
                     compress="deflate",
                     tiled=True,
                     blockxsize=256,
                     blockysize=256,
                     crs="EPSG:32621",
                     transform=from_origin(7e5, -2.7e6, 30, 30)) as dst:
    dst.write(np.moveaxis(scene, -1, 0))
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:len(data) * 2 // 3])
  scene_mask = np.zeros((side, side, 1), np.uint8)
  scene_mask[1000:1300, 2000:2600] = 255
  write_geotiff(os.path.join(msk, "truncated_scene.tif"), scene_mask)
  os.symlink(os.path.join(img, "loop_b.tif"), os.path.join(img, "loop_a.tif"))
  os.symlink(os.path.join(img, "loop_a.tif"), os.path.join(img, "loop_b.tif"))
  os.symlink("self_loop.tif", os.path.join(img, "self_loop.tif"))
  write_geotiff(os.path.join(msk, "self_loop.tif"), blank)

  out = str(d / "out")
  status = cloudfill("--images", os.path.join(img, "*.tif"), "--masks", os.path.join(msk, "{stem}.tif"), "--output",
                     out, "--model", mean_model, "--value-range", "0,65535")
  return {"out": out, "status": status, "arrays": arrays, "masks": masks}


def test_each_odd_input_is_accounted_for_with_its_reason(odd_run):
  assert odd_run["status"] == EXIT_SOME_FAILED
  dead = {
      os.path.splitext(os.path.basename(r["path"]))[0]: r for r in read_jsonl(os.path.join(odd_run["out"], "failed"))
  }
  assert sorted(dead) == sorted(EXPECTED)  # Exactly one dead letter per odd input.
  for stem, (outcome, stage, phrases) in EXPECTED.items():
    row = dead[stem]
    assert (row["outcome"], row["stage"]) == (outcome, stage), row
    assert any(p in row["reason"] for p in phrases), row


def test_good_and_odd_but_valid_tiles_are_restored_and_counts_add_up(odd_run):
  out = odd_run["out"]
  summary = read_summary(out)
  assert summary["matched"] == len(EXPECTED) + len(RESTORED)
  assert summary["counts"] == {"restored": len(RESTORED), "skipped": 1, "failed": len(EXPECTED) - 1}
  assert summary["counts_add_up"]
  assert sorted(os.listdir(os.path.join(out, "restored"))) == sorted(s + ".tif" for s in RESTORED)
  for stem in RESTORED:
    restored, profile = read_raster(os.path.join(out, "restored", stem + ".tif"))
    source, mask = odd_run["arrays"][stem], odd_run["masks"][stem]
    assert restored.shape == source.shape and profile["dtype"] == "uint16"
    np.testing.assert_array_equal(restored[~mask], source[~mask])  # Known pixels untouched.
  manifest = read_json(os.path.join(out, "manifest.json"))
  assert {os.path.basename(r["output"]) for r in manifest["restored"]} == {s + ".tif" for s in RESTORED}
  assert len(manifest["failed"]) + len(manifest["skipped"]) == len(EXPECTED)

"""Match and pair, decode and validate: TestPipeline + assert_that."""

from __future__ import annotations

import os

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to

from transforms.decode import Decode, DecodeSpec
from transforms.match import MatchPairs, mask_path_for
from transforms.masks import MaskSpec
from transforms.raster_io import DecodeError, decode_raster, encode_raster
from transforms.records import TilePair
from tests.helpers import write_geotiff, write_png


def test_mask_template_fills_stem_and_dir():
  assert mask_path_for("gs://b/img/a.tif", "gs://b/masks/{stem}.png") == "gs://b/masks/a.png"
  assert mask_path_for("/data/x/t1.tif", "{dir}/{stem}_mask.tif") == "/data/x/t1_mask.tif"
  assert mask_path_for("s3://b/2026-11-24/t.tif", "{dir}/m/{stem}.png") == "s3://b/2026-11-24/m/t.png"


def test_match_pairs_masks_and_dead_letters(pipeline, tmp_path):
  for stem in ("a", "b"):
    write_geotiff(str(tmp_path / "img" / f"{stem}.tif"), np.zeros((4, 4, 3), np.uint8))
  write_png(str(tmp_path / "msk" / "a.png"), np.zeros((4, 4), np.uint8))
  (tmp_path / "img" / "notes.txt").write_text("not an image")
  out = pipeline | MatchPairs(pattern=str(tmp_path / "img" / "*"), mask_template=str(tmp_path / "msk" / "{stem}.png"))
  assert_that(out["pairs"] | beam.Map(lambda p: (p.stem, os.path.basename(p.mask_path))),
              equal_to([("a", "a.png")]),
              label="paired")
  assert_that(out["dead"] | beam.Map(lambda d: (os.path.basename(d.path), d.stage, d.reason.split(":")[0])),
              equal_to([
                  ("b.tif", "match", "mask not found"),
                  ("notes.txt", "match",
                   "unsupported extension '.txt'; expected one of ('.tif', '.tiff', '.gtiff', '.png', '.jpg', '.jpeg')")
              ]),
              label="dead letters")


def test_same_output_name_twice_keeps_one(pipeline, tmp_path):
  # x/t.tif and y/t.tif would both write restored/t.tif; y/t.png writes
  # restored/t.png: a different output, so it is kept (issue 9, item 9).
  write_geotiff(str(tmp_path / "x" / "t.tif"), np.zeros((4, 4, 3), np.uint8))
  write_geotiff(str(tmp_path / "y" / "t.tif"), np.zeros((4, 4, 3), np.uint8))
  write_png(str(tmp_path / "y" / "t.png"), np.zeros((4, 4, 3), np.uint8))
  out = pipeline | MatchPairs(pattern=str(tmp_path / "*" / "t.*"))
  assert_that(out["pairs"] | beam.Map(lambda p: os.path.relpath(p.image_path, str(tmp_path))),
              equal_to(["x/t.tif", "y/t.png"]),
              label="first path wins")
  assert_that(out["dead"] | beam.Map(lambda d: d.reason.startswith("same output name")),
              equal_to([True]),
              label="the other is dead")


def test_decode_transform_tiles_and_refusals(pipeline, tmp_path):
  img = np.full((8, 8, 3), 500, np.uint16)
  write_geotiff(str(tmp_path / "ok.tif"), img)
  m = np.zeros((8, 8), np.uint8)
  m[2:4, 2:4] = 1
  write_png(str(tmp_path / "ok_m.png"), m)
  write_png(str(tmp_path / "clear_m.png"), np.zeros((8, 8), np.uint8))
  pairs = [
      TilePair(str(tmp_path / "ok.tif"), "ok", str(tmp_path / "ok_m.png")),
      TilePair(str(tmp_path / "ok.tif"), "clear", str(tmp_path / "clear_m.png"))
  ]
  after = pipeline | "After" >> beam.Create([[]])
  out = (pipeline | beam.Create(pairs), after) | Decode(DecodeSpec(model_bands=3))
  assert_that(out.tiles | beam.Map(lambda t: (t.pair.stem, t.image.shape, int(t.mask.sum()), t.profile["dtype"])),
              equal_to([("ok", (8, 8, 3), 4, "uint16")]),
              label="tiles")
  assert_that(out.dead | beam.Map(lambda d: (d.outcome, d.stage)),
              equal_to([("skipped", "validate")]),
              label="clear tile skipped")


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
def test_geotiff_round_trip_keeps_dtype_nodata_georef(tmp_path, dtype):
  a = (np.arange(5 * 7 * 4).reshape(5, 7, 4) % 120).astype(dtype)
  path = write_geotiff(str(tmp_path / "a.tif"), a, nodata=0, descriptions=["B1", "B2", "B3", "B4"])
  arr, prof = decode_raster(open(path, "rb").read(), ".tif")
  np.testing.assert_array_equal(arr, a)
  again, prof2 = decode_raster(encode_raster(arr, prof, {"K": "v"}), ".tif")
  np.testing.assert_array_equal(again, a)
  assert prof2["crs"] == prof["crs"] and prof2["transform"] == prof["transform"]
  assert prof2["nodata"] == 0 and prof2["descriptions"] == ["B1", "B2", "B3", "B4"]
  assert prof2["tags"]["K"] == "v"


def test_png_16bit_and_jpeg_decode(tmp_path):
  from PIL import Image
  a = (np.arange(64).reshape(8, 8) * 1000).astype(np.uint16)
  Image.fromarray(a).save(tmp_path / "a.png")
  arr, prof = decode_raster((tmp_path / "a.png").read_bytes(), ".png")
  assert arr.dtype == np.uint16 and arr.shape == (8, 8, 1)
  np.testing.assert_array_equal(arr[:, :, 0], a)
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "b.jpg")
  arr, prof = decode_raster((tmp_path / "b.jpg").read_bytes(), ".jpg")
  assert arr.shape == (8, 8, 3) and prof["driver"] == "JPEG"


@pytest.mark.parametrize("data,ext,phrase", [(b"", ".tif", "empty file"),
                                             (b"II*\x00garbage", ".tif", "not a readable TIFF"),
                                             (b"\x89PNG\r\n\x1a\nxx", ".png", "not a readable"),
                                             (b"abc", ".gif", "unsupported")])
def test_decode_errors_are_clear(data, ext, phrase):
  with pytest.raises(DecodeError, match=phrase):
    decode_raster(data, ext)


def test_decode_spec_band_selection_and_probability_band(tmp_path):
  from transforms.decode import decode_pair
  a = np.zeros((6, 6, 4), np.float32)
  a[:, :, :3] = 0.3
  a[:3, :, 3] = 0.9
  write_geotiff(str(tmp_path / "p.tif"), a)
  tile = decode_pair(TilePair(str(tmp_path / "p.tif"), "p", None),
                     DecodeSpec(mask=MaskSpec(source="band:4", threshold=0.5), model_bands=3))
  assert tile.image.shape == (6, 6, 3) and tile.mask.sum() == 18
  tile = decode_pair(TilePair(str(tmp_path / "p.tif"), "p", None),
                     DecodeSpec(mask=MaskSpec(source="band:4"), bands=(3, 1), model_bands=2))
  assert tile.image.shape == (6, 6, 2)
  with pytest.raises(ValueError, match="out of range"):
    decode_pair(TilePair(str(tmp_path / "p.tif"), "p", None), DecodeSpec(mask=MaskSpec(source="band:4"), bands=(9,)))


def test_wire_format_example_equals_protobuf_serialisation():
  import tensorflow as tf
  from model_loader import tfx
  rng = np.random.default_rng(0)
  image, mask = rng.random((8, 8, 3), np.float32), (rng.random((8, 8, 1)) > 0.5).astype(np.float32)
  wire = tfx.serialize_example(image, mask)
  assert tf.train.Example.FromString(wire) == tfx.to_example(image, mask)


def test_a_corrupt_png_reads_the_same_reason_every_time():
  """Pillow names the in-memory file (``<_io.BytesIO object at 0x…>``), which
  made every corrupt PNG a reason of its own in summary.json."""
  from transforms.raster_io import DecodeError, decode_raster
  reasons = set()
  for _ in range(2):
    with pytest.raises(DecodeError) as e:
      decode_raster(b"not a png at all", ".png")
    reasons.add(str(e.value))
  assert reasons == {"not a readable .png image: cannot identify image file"}

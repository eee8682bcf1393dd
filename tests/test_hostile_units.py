"""Issue 9, piece by piece (fast): what the hostile-input run relies on."""

from __future__ import annotations

import os

import numpy as np
import pytest
import rasterio

from tests.helpers import write_geotiff, write_png
from tests.test_hostile_inputs import png_bomb, write_gcp_tiff, write_palette_png
from transforms import raster_open
from transforms.decode import DecodeSpec, decode_pair, refusal
from transforms.incremental import is_up_to_date, output_path, provenance_tags
from transforms.masks import MaskSpec
from transforms.match import BACKSLASH_REASON, fill_template, glob_escape, inside, mask_path_for, unreadable_local_matches
from transforms.atomic_write import write_bytes_atomic
from transforms.raster_io import DecodeError, encode_raster, tiff_profile
from transforms.records import TilePair


def _pair(path, mask=None):
  name = os.path.basename(str(path))
  return TilePair(str(path),
                  os.path.splitext(name)[0], None if mask is None else str(mask), 1.0,
                  os.path.getsize(path) if os.path.isfile(path) else 0)


@pytest.mark.parametrize("kind", ["fifo", "dir", "dirlink", "device"])
def test_non_regular_files_are_refused_without_opening(tmp_path, kind):
  path = tmp_path / "x.tif"
  if kind == "fifo":
    os.mkfifo(path)
  elif kind == "dir":
    path.mkdir()
  elif kind == "dirlink":
    (tmp_path / "d").mkdir()
    path.symlink_to(tmp_path / "d")
  else:
    path = "/dev/zero"  # Reading it would never end.
  with pytest.raises(DecodeError, match="not a regular file"):
    raster_open.check_regular(str(path))
  with pytest.raises(DecodeError, match="not a regular file"):  # decode_pair checks first.
    decode_pair(TilePair(str(path), "x", None), DecodeSpec(mask=MaskSpec(source="nodata", nodata=0)))


def test_png_bomb_is_refused_from_its_header(tmp_path):
  (tmp_path / "b.png").write_bytes(png_bomb(100_000, 100_000))
  assert (tmp_path / "b.png").stat().st_size < 200
  with pytest.raises(ValueError, match="100000x100000 pixels exceeds the limit"):
    raster_open.decode_pil_file(str(tmp_path / "b.png"), ".png", 16384 * 16384)


def test_mask_size_is_checked_from_its_header(tmp_path):
  write_geotiff(str(tmp_path / "i.tif"), np.ones((16, 16, 3), np.uint16))
  (tmp_path / "m.png").write_bytes(png_bomb(20_000, 20_000))
  with pytest.raises(ValueError, match="mask: 20000x20000 pixels exceeds"):
    decode_pair(_pair(tmp_path / "i.tif", tmp_path / "m.png"), DecodeSpec())
  write_png(str(tmp_path / "m2.png"), np.zeros((15, 16), np.uint8))
  with pytest.raises(ValueError, match="mask is 16x15 but the image is 16x16"):
    decode_pair(_pair(tmp_path / "i.tif", tmp_path / "m2.png"), DecodeSpec())


def test_16bit_rgb_png_round_trips_exactly(tmp_path):
  a = (np.arange(12 * 10 * 3).reshape(12, 10, 3) * 181 % 65536).astype(np.uint16)
  with rasterio.open(str(tmp_path / "a.png"), "w", driver="PNG", height=12, width=10, count=3, dtype="uint16") as dst:
    dst.write(np.moveaxis(a, -1, 0))
  got, profile = raster_open.decode_pil_file(str(tmp_path / "a.png"), ".png", 1 << 20)
  assert got.dtype == np.uint16 and np.array_equal(got, a)
  data = encode_raster(got, profile, {"CLOUDFILL_MODEL_VERSION": "v"})
  (tmp_path / "b.png").write_bytes(data)
  back, _ = raster_open.decode_pil_file(str(tmp_path / "b.png"), ".png", 1 << 20)
  assert np.array_equal(back, a)
  from transforms.raster_io import read_tags_at
  assert read_tags_at(str(tmp_path / "b.png"))["CLOUDFILL_MODEL_VERSION"] == "v"


def test_palette_mask_is_read_by_index(tmp_path):
  index = np.zeros((8, 8), np.uint8)
  index[2:4, 2:4] = 1  # Index 1 is painted black: by colour it would read as clear.
  write_palette_png(str(tmp_path / "m.png"), index)
  values = raster_open.read_mask_file(str(tmp_path / "m.png"), 0, 1 << 20, 1 << 20, (8, 8))
  assert np.array_equal(values[:, :, 0] != 0, index == 1)


def test_gcps_and_band_metadata_survive_an_encode(tmp_path):
  a = np.arange(6 * 5 * 3, dtype=np.uint16).reshape(6, 5, 3)
  write_gcp_tiff(str(tmp_path / "g.tif"), a)
  with rasterio.open(str(tmp_path / "g.tif")) as src:
    profile = tiff_profile(src, ".tif")
  (tmp_path / "o.tif").write_bytes(encode_raster(a, profile, {"X": "1"}))
  with rasterio.open(str(tmp_path / "g.tif")) as s, rasterio.open(str(tmp_path / "o.tif")) as o:
    assert [(g.row, g.col, g.x, g.y) for g in o.gcps[0]] == [(g.row, g.col, g.x, g.y) for g in s.gcps[0]]
    assert o.gcps[1] == s.gcps[1] and o.transform == s.transform
    assert (o.scales, o.offsets, o.units) == (s.scales, s.offsets, s.units)
    assert o.tags(2) == s.tags(2) and o.tags(ns="PROVIDER") == s.tags(ns="PROVIDER")
    assert o.tags()["X"] == "1"


def test_templates_are_substituted_never_evaluated():
  assert mask_path_for("/d/a.tif", "{dir}/m/{stem}.png") == "/d/m/a.png"
  assert fill_template("{stem}", stem="{dir}") == "{dir}"  # Values are not re-expanded.
  with pytest.raises(ValueError):
    fill_template("{stem.__class__}", stem="a")


def test_literal_paths_are_never_patterns(tmp_path):
  assert glob_escape("/x/a?[1]*.tif") == "/x/a[?][[]1][*].tif"
  out = str(tmp_path / "out")
  ab = _pair_at(tmp_path / "ab.tif")
  write_bytes_atomic(output_path(out, ab.image_path),
                     encode_raster(np.ones((4, 4, 1), np.uint8), _plain("ab.tif"), provenance_tags(ab, "v1")))
  assert is_up_to_date(ab, out, "v1")
  assert not is_up_to_date(_pair_at(tmp_path / "a?.tif"), out, "v1")  # Would match ab.tif as a glob.
  x1 = _pair_at(tmp_path / "x[1].tif")
  write_bytes_atomic(output_path(out, x1.image_path),
                     encode_raster(np.ones((4, 4, 1), np.uint8), _plain("x[1].tif"), provenance_tags(x1, "v1")))
  assert is_up_to_date(x1, out, "v1")  # Found, though "[1]" as a glob would not match itself.
  assert not is_up_to_date(x1, out, "v2")


def _pair_at(path):
  return TilePair(str(path), os.path.splitext(os.path.basename(str(path)))[0], None, 1.0)


def _plain(name):
  return {
      "driver": "GTiff",
      "dtype": "uint8",
      "nodata": None,
      "crs": None,
      "transform": None,
      "descriptions": [None],
      "ext": os.path.splitext(name)[1],
      "tags": {}
  }


def test_inside_resolves_local_paths(tmp_path):
  (tmp_path / "out").mkdir()
  os.symlink(tmp_path / "out", tmp_path / "link")
  assert inside(str(tmp_path / "link" / "restored" / "a.tif"), str(tmp_path / "out"))
  assert not inside(str(tmp_path / "outer" / "a.tif"), str(tmp_path / "out"))
  assert inside("gs://b/out/restored/a.tif", "gs://b/out/") and not inside("gs://b/out2/a", "gs://b/out")


def test_float_without_value_range_must_be_0_to_1(tmp_path):
  f = np.random.default_rng(0).uniform(0, 5000, (16, 16, 3)).astype(np.float32)
  write_geotiff(str(tmp_path / "f.tif"), f)
  m = np.zeros((16, 16), np.uint8)
  m[4:8, 4:8] = 255
  write_png(str(tmp_path / "m.png"), m)
  pair = _pair(tmp_path / "f.tif", tmp_path / "m.png")
  with pytest.raises(ValueError, match="pass --value-range"):
    decode_pair(pair, DecodeSpec())
  assert decode_pair(pair, DecodeSpec(value_range=(0.0, 5000.0))).image.dtype == np.float32


def test_inf_in_a_streamed_scene_is_refused_as_in_a_tile(tmp_path):
  f = np.full((40, 40, 3), 0.5, np.float32)
  f[30, 30, 0] = np.inf
  write_geotiff(str(tmp_path / "s.tif"), f)
  m = np.zeros((40, 40), np.uint8)
  m[2:5, 2:5] = 255
  write_png(str(tmp_path / "s.png"), m)
  for scene_pixels in (0, 100):  # 0: decoded whole; 100: streamed by rows.
    with pytest.raises(ValueError, match="infinite values outside the mask"):
      decode_pair(_pair(tmp_path / "s.tif", tmp_path / "s.png"), DecodeSpec(scene_pixels=scene_pixels))


@pytest.mark.parametrize("kwargs,phrase", [(dict(bands=(0, 1, 2)), "1-based"), (dict(bands=(1, 1, 2)), "repeats"),
                                           (dict(max_pixels=0), "--max-pixels"),
                                           (dict(value_range=(float("nan"), 1.0)), "finite"),
                                           (dict(value_range=(0.0, float("inf"))), "finite"),
                                           (dict(value_range=(2.0, 1.0)), "LO < HI")])
def test_decode_spec_refuses_bad_values(kwargs, phrase):
  with pytest.raises(ValueError, match=phrase):
    DecodeSpec(**kwargs)


@pytest.mark.parametrize("kwargs,phrase", [(dict(source="band:x"), "1-based band number"),
                                           (dict(source="band:0"), "1-based band number"),
                                           (dict(threshold=float("nan")), "finite")])
def test_mask_spec_refuses_bad_values(kwargs, phrase):
  with pytest.raises(ValueError, match=phrase):
    MaskSpec(**kwargs)


def test_any_exception_is_a_refusal_with_its_reason():
  assert refusal(DecodeError("x")) == ("decode", "x")
  assert refusal(ValueError("y")) == ("validate", "y")
  assert refusal(IsADirectoryError(21, "Is a directory"))[0] == "decode"
  assert refusal(KeyError("z")) == ("decode", "KeyError: 'z'")
  from PIL import Image
  assert refusal(Image.DecompressionBombError("big"))[0] == "decode"


def test_a_scene_whose_file_changes_after_decoding_fails_alone(tmp_path):
  """CutWindows re-reads a scene's rows; if its file was cut short meanwhile,
  the scene becomes a ``window`` failure that its assembly turns into a dead letter."""
  from transforms.records import WindowFailure
  from transforms.scene_write import AssembleScenes, SceneWriteSpec
  from transforms.scenes import SceneRef
  from transforms.window import FAILED_WINDOWS, CutWindows, WindowSpec
  a = np.random.default_rng(5).integers(1000, 9000, (300, 300, 3)).astype(np.uint16)
  write_geotiff(str(tmp_path / "s.tif"), a)
  m = np.zeros((300, 300), np.uint8)
  m[::37, ::41] = 255
  write_png(str(tmp_path / "s.png"), m)
  ref = decode_pair(_pair(tmp_path / "s.tif", tmp_path / "s.png"), DecodeSpec(scene_pixels=100))
  assert isinstance(ref, SceneRef)
  data = (tmp_path / "s.tif").read_bytes()
  (tmp_path / "s.tif").write_bytes(data[:len(data) // 3])  # Changed by someone else mid-run.
  out = list(CutWindows(WindowSpec(size=64, overlap=8), str(tmp_path / "out")).process(ref))
  assert out and out[-1].tag == FAILED_WINDOWS
  key, failure = out[-1].value
  assert key == "s.tif" and isinstance(failure, WindowFailure) and failure.stage == "window" and failure.scene
  (dead,) = list(
      AssembleScenes(SceneWriteSpec(str(tmp_path / "out"), "v")).process(("s.tif", {
          "scene": [ref],
          "spills": [failure]
      })))
  assert dead.tag == "dead" and dead.value.stage == "window" and "window(s) failed" in dead.value.reason


def test_backslash_names_are_dead_letters_where_glob_would_match_them(tmp_path):
  """Beam's `*` never matches a backslash, so such files get a dead letter, but
  only where the pattern matches them as glob would: a wildcard may stand for
  the backslash, a literal character may not."""
  for name in ("plain.tif", "a\\b.tif", "a\\x.tif"):
    (tmp_path / name).write_bytes(b"")

  def dead(pattern):
    letters = unreadable_local_matches(str(tmp_path / pattern))
    assert all(d.stage == "match" and d.reason == BACKSLASH_REASON for d in letters)
    return sorted(os.path.basename(d.path) for d in letters)

  assert dead("*.tif") == ["a\\b.tif", "a\\x.tif"]
  assert dead("a?x.tif") == ["a\\x.tif"]
  assert dead("*_x.tif") == []  # glob would not match a\x.tif: `_` is a literal
  assert dead("plain.tif") == []

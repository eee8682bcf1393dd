"""Issue 9: hostile inputs beside good tiles, in one run that must finish.

Every hostile file is made here, in the test: decompression bombs (a PNG
header claiming 100000² pixels, a mask claiming 20000², a sparse TIFF
claiming 20000²), FIFOs as image and as mask, directories and directory
symlinks named ``*.tif``, a mask path that is a directory, glob characters
in names (``a?.tif`` beside ``ab.tif``, ``x[1].tif``), a TIFF with 40 MB of
padding, a GCP-georeferenced GeoTIFF with scale/offset, units, band and
namespaced tags, 16-bit RGB PNG, a palette PNG mask, JPEG input, float32
outside 0…1 without ``--value-range``, ``a.tif`` beside ``a.png``, a mask
inside the output's ``restored/``, and a tile the model fails on.

The run is a real ``cloudfill run`` in a subprocess with a timeout (a hang
fails the test). Then: every good tile restored with its known pixels
bit-identical, every bad input dead-lettered with its reason, counts that add
up, exit 3, and a second run that restores nothing again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS

from tests.helpers import cloud_mask, read_jsonl, read_summary, write_geotiff, write_png

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_TIMEOUT_S = 420


def cloudfill_subprocess(*args: str, timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
  """``cloudfill run ARGS`` in a fresh interpreter; a hang ends in TimeoutExpired (a failure)."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
  return subprocess.run([sys.executable, "-m", "pipeline.cli", "run", *args, "--no-report"],
                        cwd=ROOT,
                        env=env,
                        capture_output=True,
                        text=True,
                        timeout=timeout,
                        check=False)


def png_bomb(side_w: int, side_h: int) -> bytes:
  """A tiny PNG whose header claims ``side_w x side_h`` 8-bit grey pixels."""
  import struct
  import zlib

  def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

  ihdr = struct.pack(">IIBBBBB", side_w, side_h, 8, 0, 0, 0, 0)
  return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def write_gcp_tiff(path: str, array: np.ndarray) -> None:
  """A GeoTIFF georeferenced by GCPs only, with scale/offset, units, band and namespaced tags."""
  h, w, c = array.shape
  gcps = [
      GroundControlPoint(row=0, col=0, x=500000.0, y=4000000.0, z=0.0, id="a"),
      GroundControlPoint(row=0, col=w, x=500000.0 + 30 * w, y=4000000.0, z=0.0, id="b"),
      GroundControlPoint(row=h, col=0, x=500000.0, y=4000000.0 - 30 * h, z=0.0, id="c")
  ]
  with rasterio.open(path,
                     "w",
                     driver="GTiff",
                     height=h,
                     width=w,
                     count=c,
                     dtype=str(array.dtype),
                     gcps=gcps,
                     crs=CRS.from_epsg(32633)) as dst:
    dst.write(np.moveaxis(array, -1, 0))
    dst.scales = [0.0001] * c
    dst.offsets = [-0.1] * c
    dst.units = ["reflectance"] * c
    for i in range(1, c + 1):
      dst.update_tags(i, WAVELENGTH=str(440 + 100 * i))
    dst.update_tags(ns="PROVIDER", MISSION="test-sat")


def write_palette_png(path: str, index: np.ndarray) -> None:
  """A palette PNG: index 0 is painted white (clear), index 1 black (cloud)."""
  from PIL import Image
  im = Image.fromarray(index.astype(np.uint8), mode="P")
  im.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
  im.save(path)


@pytest.fixture(scope="module")
def failing_model(tmp_path_factory):
  """The mean-fill model, but a batch with a known value above 0.95 raises."""
  from tests.model_fixture import make_mean_fill_model
  return make_mean_fill_model(str(tmp_path_factory.mktemp("models") / "failing"), window=64, overlap=8, fail_above=0.95)


GOOD = ("good_a.tif", "good_b.png", "rgb16.png", "gcp.tif", "a?.tif", "ab.tif", "x[1].tif", "padded.tif", "same.tif",
        "same.png", "palette_mask.tif")

BAD = {  # file name -> (outcome, stage, phrase of the reason)
    "bomb.png": ("failed", "validate", "exceeds the limit"),
    "bomb_mask.tif": ("failed", "validate", "mask: 20000x20000 pixels exceeds the limit"),
    "sparse.tif": ("failed", "validate", "20000x20000 pixels exceeds the limit"),
    "fifo.tif": ("failed", "decode", "a FIFO (named pipe), not a regular file"),
    # First in sorted order, so the launch check samples it: it must not open it (that hung).
    "0fifo.tif": ("failed", "decode", "a FIFO (named pipe), not a regular file"),
    # A GDAL VRT named .tif that reads a local file: a .tif is read as a TIFF only.
    "vrt.tif": ("failed", "decode", "not recognized as being in a supported file format"),
    "fifo_mask.tif": ("failed", "decode", "a FIFO (named pipe), not a regular file"),
    "dir.tif": ("failed", "match", "a directory"),
    "dirlink.tif": ("failed", "match", "a directory"),
    # Beam's match never lists it (`*` stops at a backslash): it refused the whole run, now it is dead-lettered.
    "back\\slash.tif": ("failed", "match", "a backslash in the file name"),
    "maskdir.tif": ("failed", "decode", "is a directory, not a regular file"),
    "photo.jpg": ("failed", "validate", "JPEG input is refused"),
    "float_big.tif": ("failed", "validate", "pass --value-range"),
    "model_fails.tif": ("failed", "infer", "test model refuses this batch"),
    "into_output.tif": ("failed", "match", "lies in the output's restored/ folder"),
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, failing_model):
  d = tmp_path_factory.mktemp("hostile")
  img, msk, out = d / "img", d / "mask", d / "out"
  for folder in (img, msk, out / "restored"):
    folder.mkdir(parents=True)
  rng = np.random.default_rng(9)
  arrays, masks = {}, {}

  def tile(name, h=80, w=72, dtype=np.uint16, mask_png=True, c=3):
    stem = os.path.splitext(name)[0]
    hi = 60000 if dtype == np.uint16 else 240
    a = rng.integers(1000 if dtype == np.uint16 else 10, hi, (h, w, c)).astype(dtype)
    m = cloud_mask(h, w, seed=len(name))
    arrays[name], masks[name] = a, m
    if mask_png:
      write_png(str(msk / f"{stem}.png"), m.astype(np.uint8) * 255)
    return a, m

  a, _ = tile("good_a.tif")
  write_geotiff(str(img / "good_a.tif"), a)
  a, _ = tile("good_b.png", dtype=np.uint8)
  write_png(str(img / "good_b.png"), a)
  # 16-bit RGB PNG (Pillow would read it as 8-bit).
  a, _ = tile("rgb16.png")
  with rasterio.open(str(img / "rgb16.png"),
                     "w",
                     driver="PNG",
                     height=a.shape[0],
                     width=a.shape[1],
                     count=3,
                     dtype="uint16") as dst:
    dst.write(np.moveaxis(a, -1, 0))
  a, _ = tile("gcp.tif")
  write_gcp_tiff(str(img / "gcp.tif"), a)
  for name in ("a?.tif", "ab.tif", "x[1].tif"):  # Glob characters in names.
    a, _ = tile(name)
    write_geotiff(str(img / name), a)
  # A 64x64 tile followed by 40 MB of padding: read by its header, not whole.
  a, _ = tile("padded.tif", 64, 64)
  write_geotiff(str(img / "padded.tif"), a)
  with open(img / "padded.tif", "ab") as f:
    f.write(b"\0" * (40 << 20))
  # a.tif beside a.png: two outputs (restored/same.tif, restored/same.png), both restored.
  a, _ = tile("same.tif")
  write_geotiff(str(img / "same.tif"), a)
  b = rng.integers(10, 240, a.shape).astype(np.uint8)
  arrays["same.png"], masks["same.png"] = b, masks["same.tif"]
  write_png(str(img / "same.png"), b)
  # A palette PNG mask: read by index (1 = cloud), not by colour (index 1 is black).
  a, m = tile("palette_mask.tif", mask_png=False)
  write_geotiff(str(img / "palette_mask.tif"), a)
  write_palette_png(str(msk / "palette_mask.png"), m)

  # Bombs: a 100000² PNG header in a few dozen bytes; a 20000² mask header; a
  # sparse 20000² TIFF (no strips written).
  (img / "bomb.png").write_bytes(png_bomb(100_000, 100_000))
  write_png(str(msk / "bomb.png"), np.zeros((8, 8), np.uint8))
  a, _ = tile("bomb_mask.tif", 64, 64, mask_png=False)
  write_geotiff(str(img / "bomb_mask.tif"), a)
  (msk / "bomb_mask.png").write_bytes(png_bomb(20_000, 20_000))
  with rasterio.open(str(img / "sparse.tif"),
                     "w",
                     driver="GTiff",
                     height=20_000,
                     width=20_000,
                     count=3,
                     dtype="uint16",
                     tiled=True,
                     SPARSE_OK=True) as dst:
    pass
  write_png(str(msk / "sparse.png"), np.zeros((8, 8), np.uint8))
  # Non-regular files: FIFOs, directories, a symlink to a directory.
  os.mkfifo(img / "fifo.tif")
  os.mkfifo(img / "0fifo.tif")
  write_png(str(msk / "0fifo.png"), np.zeros((8, 8), np.uint8))
  band = ('<VRTRasterBand dataType="Byte" band="{b}" subClass="VRTRawRasterBand"><SourceFilename relativetoVRT="0">'
          f'{os.path.join(ROOT, "README.md")}</SourceFilename><ImageOffset>{{off}}</ImageOffset><PixelOffset>1'
          '</PixelOffset><LineOffset>64</LineOffset></VRTRasterBand>')
  (img / "vrt.tif").write_text('<VRTDataset rasterXSize="64" rasterYSize="64">' +
                               "".join(band.format(b=b, off=64 * 64 * (b - 1)) for b in (1, 2, 3)) + "</VRTDataset>")
  write_png(str(msk / "vrt.png"), cloud_mask(64, 64, seed=3).astype(np.uint8) * 255)
  write_png(str(msk / "fifo.png"), np.zeros((8, 8), np.uint8))
  a, _ = tile("fifo_mask.tif", 64, 64, mask_png=False)
  write_geotiff(str(img / "fifo_mask.tif"), a)
  os.mkfifo(msk / "fifo_mask.png")
  (img / "dir.tif").mkdir()
  shutil.copy(img / "good_a.tif", img / "back\\slash.tif")
  shutil.copy(msk / "good_a.png", msk / "back\\slash.png")
  (d / "elsewhere").mkdir()
  os.symlink(d / "elsewhere", img / "dirlink.tif")
  a, _ = tile("maskdir.tif", 64, 64, mask_png=False)
  write_geotiff(str(img / "maskdir.tif"), a)
  (msk / "maskdir.png").mkdir()
  # JPEG input: lossy, refused.
  a, _ = tile("photo.jpg", 64, 64, dtype=np.uint8)
  from PIL import Image
  Image.fromarray(a).save(img / "photo.jpg", quality=95)
  # float32 reflectance x 10000 without --value-range.
  f = rng.uniform(0, 5000, (64, 64, 3)).astype(np.float32)
  write_geotiff(str(img / "float_big.tif"), f)
  write_png(str(msk / "float_big.png"), cloud_mask(64, 64, seed=1).astype(np.uint8) * 255)
  # A tile the model fails on (a known value of 65535 -> 1.0 > 0.95).
  a, _ = tile("model_fails.tif", 64, 64)
  a[0, 0, 0] = 65535
  masks["model_fails.tif"][0, 0] = False
  write_png(str(msk / "model_fails.png"), masks["model_fails.tif"].astype(np.uint8) * 255)
  write_geotiff(str(img / "model_fails.tif"), a)
  # A mask that is the output's restored/ file of its image: writing would overwrite it.
  a, _ = tile("into_output.tif", 64, 64, mask_png=False)
  write_geotiff(str(img / "into_output.tif"), a)
  write_png(str(out / "restored" / "into_output.png"), masks["into_output.tif"].astype(np.uint8) * 255)
  (msk / "into_output.png").symlink_to(out / "restored" / "into_output.png")

  args = [
      "--images",
      str(img / "*"), "--masks",
      str(msk / "{stem}.png"), "--output",
      str(out), "--model", failing_model, "--max-batch-size", "1"
  ]
  return d, img, msk, out, arrays, masks, args


@pytest.fixture(scope="module")
def first_run(hostile):
  d, img, msk, out, arrays, masks, args = hostile
  proc = cloudfill_subprocess(*args)
  return proc


def _by_name(rows):
  return {os.path.basename(r["path"]): r for r in rows}


def test_run_finishes_with_exit_3_and_counts_that_add_up(hostile, first_run):
  _, _, _, out, _, _, _ = hostile
  assert first_run.returncode == 3, first_run.stderr[-3000:]
  summary = read_summary(str(out))
  assert summary["counts_add_up"]
  assert summary["matched"] == len(GOOD) + len(BAD)
  assert summary["counts"] == {"restored": len(GOOD), "skipped": 0, "failed": len(BAD)}
  assert not os.path.exists(out / ".cloudfill.lock"), "the run left its lock"


def test_every_bad_input_is_dead_lettered_with_its_reason(hostile, first_run):
  _, _, _, out, _, _, _ = hostile
  dead = _by_name(read_jsonl(str(out / "failed")))
  assert set(dead) == set(BAD), sorted(dead)
  for name, (outcome, stage, phrase) in BAD.items():
    row = dead[name]
    assert (row["outcome"], row["stage"]) == (outcome, stage), (name, row)
    assert phrase in row["reason"], (name, row["reason"])


def test_every_good_tile_is_restored_exactly(hostile, first_run):
  _, _, _, out, arrays, masks, _ = hostile
  manifest = json.loads((out / "manifest.json").read_text())
  assert sorted(os.path.basename(r["path"]) for r in manifest["restored"]) == sorted(GOOD)
  for name in GOOD:
    with rasterio.open(str(out / "restored" / name)) as src:
      got = np.moveaxis(src.read(), 0, -1)
    a, m = arrays[name], masks[name]
    assert got.dtype == a.dtype and got.shape == a.shape, name
    assert np.array_equal(got[~m], a[~m]), f"{name}: known pixels changed"
    assert not np.array_equal(got[m], a[m]), f"{name}: holes not filled"


def test_16bit_png_stays_16bit(hostile, first_run):
  _, _, _, out, arrays, _, _ = hostile
  with rasterio.open(str(out / "restored" / "rgb16.png")) as src:
    assert src.dtypes == ("uint16",) * 3
    assert int(src.read().max()) > 255


def test_gcps_scales_units_and_tags_are_kept(hostile, first_run):
  _, img, _, out, _, _, _ = hostile
  with rasterio.open(str(img / "gcp.tif")) as a, rasterio.open(str(out / "restored" / "gcp.tif")) as b:
    (gin, cin), (gout, cout) = a.gcps, b.gcps
    assert [(g.row, g.col, g.x, g.y) for g in gout] == [(g.row, g.col, g.x, g.y) for g in gin]
    assert cout == cin
    assert b.scales == a.scales and b.offsets == a.offsets and b.units == a.units
    assert [b.tags(i) for i in (1, 2, 3)] == [a.tags(i) for i in (1, 2, 3)]
    assert b.tags(ns="PROVIDER") == {"MISSION": "test-sat"}


def test_second_run_is_incremental(hostile, first_run):
  _, _, _, out, _, _, args = hostile
  before = {n: os.path.getmtime(out / "restored" / n) for n in GOOD}
  proc = cloudfill_subprocess(*args)
  assert proc.returncode == 3, proc.stderr[-3000:]
  summary = read_summary(str(out))
  assert summary["counts"] == {"restored": 0, "skipped": len(GOOD), "failed": len(BAD)}
  assert {n: os.path.getmtime(out / "restored" / n) for n in GOOD} == before


@pytest.mark.parametrize("backend", ["native", "tfx"])
def test_a_failing_batch_fails_only_its_tiles(tmp_path, failing_model, backend):
  """RunInference's exception handling, on both backends: the batch the model
  raises on becomes ``infer`` dead letters for its tile; the others are restored."""
  rng = np.random.default_rng(1)
  for name in ("ok1", "ok2", "bad"):
    a = rng.integers(1000, 9000, (64, 64, 3)).astype(np.uint16)
    m = cloud_mask(64, 64, seed=len(name))
    if name == "bad":
      a[~m] = 65535  # Known values of 1.0: the test model raises on them.
    write_geotiff(str(tmp_path / "img" / f"{name}.tif"), a)
    write_png(str(tmp_path / "mask" / f"{name}.png"), m.astype(np.uint8) * 255)
  out = tmp_path / "out"
  proc = cloudfill_subprocess("--images", str(tmp_path / "img" / "*.tif"), "--masks",
                              str(tmp_path / "mask" / "{stem}.png"), "--output", str(out), "--model", failing_model,
                              "--max-batch-size", "1", "--backend", backend)
  assert proc.returncode == 3, proc.stderr[-3000:]
  assert read_summary(str(out))["counts"] == {"restored": 2, "skipped": 0, "failed": 1}
  (dead,) = read_jsonl(str(out / "failed"))
  assert dead["stage"] == "infer" and dead["path"].endswith("bad.tif")
  assert "test model refuses this batch" in dead["reason"], dead["reason"]


def test_dry_run_opens_no_fifo_and_decodes_no_bomb(hostile):
  """`--dry-run` over the same inputs finishes (it read every header, so a
  FIFO hung it) and refuses what the run dead-letters at decode or validate,
  from the headers: bombs are not decoded."""
  d, img, msk, out, arrays, masks, args = hostile
  proc = cloudfill_subprocess(*args, "--output", str(d / "dry"), "--dry-run", timeout=300)
  assert proc.returncode == 0, proc.stderr
  lines = {os.path.basename(l.split()[1]): l for l in proc.stdout.splitlines() if l.startswith(("restore", "refuse"))}
  for name, phrase in (("0fifo.tif", "a FIFO (named pipe)"), ("fifo.tif", "a FIFO (named pipe)"),
                       ("bomb.png", "exceeds the limit"), ("bomb_mask.tif", "mask: 20000x20000 pixels exceeds"),
                       ("sparse.tif", "exceeds the limit"), ("vrt.tif", "not recognized"), ("dir.tif", "a directory"),
                       ("dirlink.tif", "a directory"), ("back\\slash.tif", "a backslash in the file name")):
    assert lines[name].startswith("refuse") and phrase in lines[name], lines.get(name)
  assert "DecompressionBombWarning" not in proc.stderr
  for name in ("good_a.tif", "ab.tif", "gcp.tif"):
    assert lines[name].startswith("restore"), lines[name]
  assert not os.path.exists(d / "dry")

"""Fuzz the decoders with mutated real TIFF, PNG and JPEG bytes.

Whatever the bytes, ``decode_raster`` may only raise ``DecodeError`` or
``ValueError``, and the ``Decode`` stage's DoFn may raise nothing at all:
every bad input must leave as a dead letter, never as an exception that
fails the bundle (and, retried, the whole job). Examples are few and
derandomized, so the suite stays fast and repeatable; set
``CLOUDFILL_FUZZ_EXAMPLES`` for a longer, random search.
"""

from __future__ import annotations

import io
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from tests.helpers import cloud_mask
from transforms.decode import DecodeSpec, DecodeTiles
from transforms.masks import MaskSpec
from transforms.raster_io import DecodeError, decode_raster
from transforms.records import Tile, TilePair

# CLOUDFILL_FUZZ_EXAMPLES=2000 for a deeper, randomized hunt.
_EXAMPLES = int(os.environ.get("CLOUDFILL_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=_EXAMPLES,
                deadline=None,
                derandomize="CLOUDFILL_FUZZ_EXAMPLES" not in os.environ,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _tiff(tiled: bool) -> bytes:
  import rasterio  # pylint: disable=import-outside-toplevel
  from rasterio.io import MemoryFile  # pylint: disable=import-outside-toplevel
  from rasterio.transform import from_origin  # pylint: disable=import-outside-toplevel
  a = np.random.default_rng(1).integers(0, 60000, (3, 32, 32)).astype(np.uint16)
  extra = dict(tiled=True, blockxsize=16, blockysize=16) if tiled else {}
  with MemoryFile() as mem:
    with mem.open(driver="GTiff",
                  height=32,
                  width=32,
                  count=3,
                  dtype="uint16",
                  compress="deflate",
                  crs="EPSG:32621",
                  transform=from_origin(7e5, -2.7e6, 30, 30),
                  nodata=0,
                  **extra) as dst:
      dst.write(a)
      dst.update_tags(CLOUDFILL_MODEL_VERSION="x")
    del rasterio
    return mem.read()


def _pil(fmt: str, mode: str = "L") -> bytes:
  from PIL import Image  # pylint: disable=import-outside-toplevel
  arr = cloud_mask(32, 32, seed=2).astype(np.uint8) * 255
  im = Image.fromarray(arr) if mode == "L" else Image.fromarray(np.dstack([arr] * 3))
  buf = io.BytesIO()
  im.save(buf, format=fmt)
  return buf.getvalue()


SEEDS = {".tif": [_tiff(False), _tiff(True)], ".png": [_pil("PNG"), _pil("PNG", "RGB")], ".jpg": [_pil("JPEG", "RGB")]}


@st.composite
def mutated(draw, ext: str) -> bytes:
  """A seed file with some bytes overwritten, inserted or cut off."""
  data = bytearray(draw(st.sampled_from(SEEDS[ext])))
  header = draw(st.booleans())  # Aim half of the edits at the first 64 bytes (headers, IFD offsets).
  hi = min(len(data), 64) - 1 if header else len(data) - 1
  for pos, value in draw(st.lists(st.tuples(st.integers(0, hi), st.integers(0, 255)), max_size=12)):
    data[pos] = value
  if draw(st.booleans()):
    pos = draw(st.integers(0, len(data)))
    data[pos:pos] = draw(st.binary(min_size=1, max_size=32))
  if draw(st.booleans()):
    data = data[:draw(st.integers(0, len(data)))]
  return bytes(data)


def _pair(tmp_path, image: bytes, mask: bytes) -> TilePair:
  image_path, mask_path = str(tmp_path / "t.tif"), str(tmp_path / "t.png")
  with open(image_path, "wb") as f:
    f.write(image)
  with open(mask_path, "wb") as f:
    f.write(mask)
  return TilePair(image_path=image_path,
                  stem="t",
                  mask_path=mask_path,
                  mtime=os.path.getmtime(image_path),
                  size_bytes=len(image))


def _dead_letter_or(kind, out: list) -> None:
  assert len(out) == 1
  item = out[0]
  if isinstance(item, kind):
    assert item.pair.stem == "t"
  else:
    assert item.tag == "dead" and item.value.reason


@pytest.mark.parametrize("ext", sorted(SEEDS))
def test_decode_raster_raises_only_decode_or_value_errors(ext):

  @FUZZ
  @given(data=mutated(ext))
  def check(data):
    try:
      image, profile = decode_raster(data, ext)
    except (DecodeError, ValueError):
      return
    assert image.ndim == 3 and image.shape[2] >= 1
    assert profile["dtype"] == str(image.dtype)

  check()


def test_decode_stage_dead_letters_any_mutated_pair(tmp_path):
  """Mutated image and mask files through the Decode DoFn: a tile or a dead letter."""
  dofn = DecodeTiles(DecodeSpec(mask=MaskSpec(source="file"), model_bands=3))

  @FUZZ
  @given(image=mutated(".tif"), mask=mutated(".png"))
  def check(image, mask):
    out = list(dofn.process(_pair(tmp_path, image, mask)))  # Must not raise.
    _dead_letter_or(Tile, out)
    if isinstance(out[0], Tile):
      assert out[0].mask.shape == out[0].image.shape[:2]

  check()


def test_scene_path_dead_letters_any_mutated_tiff(tmp_path):
  """The streamed large-scene path (forced with a tiny ``scene_pixels``) on
  mutated TIFFs beside an intact mask: a SceneRef or a dead letter."""
  from transforms.scenes import SceneRef  # pylint: disable=import-outside-toplevel
  dofn = DecodeTiles(DecodeSpec(mask=MaskSpec(source="file"), model_bands=3, scene_pixels=16 * 16))
  mask = SEEDS[".png"][0]

  @FUZZ
  @given(image=mutated(".tif"))
  def check(image):
    _dead_letter_or(SceneRef, list(dofn.process(_pair(tmp_path, image, mask))))  # Must not raise.

  check()


def _png16() -> bytes:
  """A 16-bit RGB PNG (decoded by GDAL's PNG driver, not Pillow)."""
  import warnings  # pylint: disable=import-outside-toplevel

  import rasterio  # pylint: disable=import-outside-toplevel
  from rasterio.io import MemoryFile  # pylint: disable=import-outside-toplevel
  a = np.random.default_rng(3).integers(0, 65535, (3, 32, 32)).astype(np.uint16)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
    with MemoryFile() as mem:
      with mem.open(driver="PNG", height=32, width=32, count=3, dtype="uint16") as dst:
        dst.write(a)
      return mem.read()


SEEDS[".png16"] = [_png16()]


def test_png_images_of_8_and_16_bits_dead_letter_when_mutated(tmp_path):
  """Mutated 8-bit and 16-bit RGB PNG images (issue 9: the header is read
  before decoding, 16-bit goes through GDAL): a tile or a dead letter."""
  dofn = DecodeTiles(DecodeSpec(mask=MaskSpec(source="file"), model_bands=3))
  mask = SEEDS[".png"][0]

  @FUZZ
  @given(image=st.one_of(mutated(".png16"), mutated(".png")))
  def check(image):
    image_path, mask_path = str(tmp_path / "t.png"), str(tmp_path / "t_mask.png")
    with open(image_path, "wb") as f:
      f.write(image)
    with open(mask_path, "wb") as f:
      f.write(mask)
    pair = TilePair(image_path=image_path, stem="t", mask_path=mask_path, size_bytes=len(image))
    out = list(dofn.process(pair))  # Must not raise.
    _dead_letter_or(Tile, out)
    if isinstance(out[0], Tile) and out[0].image.dtype == np.uint16:
      assert out[0].image.shape[2] == 3

  check()

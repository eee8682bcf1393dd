"""Stage 2: decode an image and its mask, and refuse what cannot be restored."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Iterator, Optional, Sequence, Union

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

from transforms import counters, masks, scenes
from transforms.raster_io import (SUPPORTED_DTYPES, TIFF_EXTS, DecodeError, decode_raster, local_copy,
                                  read_bytes, split_ext, tiff_profile)
from transforms.records import FAILED, SKIPPED, DeadLetter, Tile, TilePair

DEAD = "dead"
# Remote TIFFs smaller than this are decoded from their bytes, never as scenes.
SMALL_REMOTE_BYTES = 64 << 20


@dataclasses.dataclass(frozen=True)
class DecodeSpec:
  """What decoding expects of each tile.

  Attributes:
    mask: How the mask is derived.
    bands: 1-based band indices to keep (``--bands 4,3,2``), or empty for all.
    model_bands: How many bands the model takes; other counts are refused.
    nan_as_missing: Treat NaN pixels of float input as missing instead of
      refusing the tile.
    max_pixels: Refuse tiles larger than this (height * width).
    scene_pixels: GeoTIFFs larger than this take the streamed large-scene
      path (:mod:`transforms.scenes`).
  """

  mask: masks.MaskSpec = masks.MaskSpec()
  bands: Sequence[int] = ()
  model_bands: Optional[int] = None
  nan_as_missing: bool = False
  max_pixels: int = 32_768 * 32_768
  scene_pixels: int = 2048 * 2048


def _read_mask(pair: TilePair, h: int, w: int) -> Optional[np.ndarray]:
  if not pair.mask_path:
    return None
  _, mext = split_ext(pair.mask_path)
  try:
    mask_values, _ = decode_raster(read_bytes(pair.mask_path), mext)
  except DecodeError as e:
    raise DecodeError(f"mask {pair.mask_path}: {e}") from e
  if mask_values.shape[:2] != (h, w):
    raise ValueError(f"mask is {mask_values.shape[1]}x{mask_values.shape[0]} "
                     f"but the image is {w}x{h}")
  return mask_values


def _check_size_dtype(profile: dict, h: int, w: int, spec: DecodeSpec) -> None:
  if profile["dtype"] not in SUPPORTED_DTYPES:
    raise DecodeError(f"unsupported dtype {profile['dtype']}; supported: {SUPPORTED_DTYPES}")
  if h * w > spec.max_pixels:
    raise ValueError(f"{w}x{h} pixels exceeds the limit of {spec.max_pixels}")


def _band_index(count: int, spec: DecodeSpec) -> tuple[int, ...]:
  """0-based bands to restore, after removing a probability band."""
  keep = [i for i in range(count) if spec.mask.band is None or i != spec.mask.band - 1]
  if spec.bands:
    bad = [b for b in spec.bands if not 1 <= b <= len(keep)]
    if bad:
      raise ValueError(f"--bands {bad} out of range: the image has {len(keep)} bands")
    keep = [keep[b - 1] for b in spec.bands]
  if spec.model_bands is not None and len(keep) != spec.model_bands:
    raise ValueError(f"the image has {len(keep)} bands but the model takes "
                     f"{spec.model_bands}; select bands with --bands")
  return tuple(keep)


def _with_nan(values: np.ndarray, mask: np.ndarray, spec: DecodeSpec, where: str = "") -> np.ndarray:
  """The mask with NaN pixels of float ``values`` added (``--nan-as-missing``).

  Raises:
    ValueError: NaN outside the mask, without ``--nan-as-missing``.
  """
  nan = np.isnan(values).any(axis=2)
  if spec.nan_as_missing:
    return mask | nan
  outside = nan & ~mask
  if outside.any():
    raise ValueError(f"{int(outside.sum())} NaN pixels outside the mask{where}; "
                     "mask them or pass --nan-as-missing")
  return mask


def _open_scene(pair: TilePair, local: str, profile: dict, spec: DecodeSpec) -> scenes.SceneRef:
  """Validates a large GeoTIFF by rows and returns it by reference."""
  import rasterio  # pylint: disable=import-outside-toplevel
  h, w = profile["height"], profile["width"]
  _check_size_dtype(profile, h, w, spec)
  band_index = _band_index(profile["count"], spec)
  mask_values = _read_mask(pair, h, w)
  mask = np.zeros((h, w), bool)
  with scenes.gdal_env(), rasterio.open(local) as src:
    for r0 in range(0, h, scenes.STRIPE_ROWS):
      r1 = min(h, r0 + scenes.STRIPE_ROWS)
      rows = scenes.read_rows(src, r0, r1, tuple(range(profile["count"])))
      part = None if mask_values is None else mask_values[r0:r1]
      _, m = masks.derive(rows, part, profile.get("nodata"), dataclasses.replace(spec.mask, dilate=0))
      if rows.dtype.kind == "f":
        m = _with_nan(rows[:, :, band_index], m, spec, f" in rows {r0}-{r1}")
      mask[r0:r1] = m
  del mask_values
  mask = masks.dilate(mask, spec.mask.dilate)
  return scenes.SceneRef(pair=pair, local_path=local, profile=profile, band_index=band_index,
                         packed_mask=np.packbits(mask, axis=None))


def _maybe_scene(pair: TilePair, ext: str, spec: DecodeSpec) -> Optional[scenes.SceneRef]:
  """A SceneRef when the GeoTIFF's header says it is larger than ``scene_pixels``.

  Remote files under ``SMALL_REMOTE_BYTES`` are never scenes (they are
  decoded whole); others are probed from a local path (object-storage files
  are streamed to a temporary copy first).
  """
  import rasterio  # pylint: disable=import-outside-toplevel
  remote = FileSystems.get_scheme(pair.image_path) is not None
  if remote and 0 < pair.size_bytes < SMALL_REMOTE_BYTES:
    return None  # Decoded whole from its bytes; the pixel limit still applies.
  local, temp = local_copy(pair.image_path)
  try:
    try:
      with rasterio.open(local) as src:
        profile = tiff_profile(src, ext)
    except rasterio.errors.RasterioError as e:
      raise DecodeError(f"not a readable TIFF: {e}") from e
    if profile["height"] * profile["width"] <= spec.scene_pixels:
      if temp:
        os.remove(local)
      return None
    try:
      return _open_scene(pair, local, profile, spec)
    except rasterio.errors.RasterioError as e:  # E.g. a truncated scene: its rows fail to read.
      raise DecodeError(f"not a readable TIFF: {e.__cause__ or e}") from e
  except BaseException:
    if temp and os.path.exists(local):
      os.remove(local)
    raise


def decode_pair(pair: TilePair, spec: DecodeSpec) -> Union[Tile, scenes.SceneRef]:
  """Reads and validates one pair; large GeoTIFFs come back by reference.

  Raises:
    DecodeError: the bytes are not a usable raster.
    ValueError: the tile cannot be restored as asked (the message says why).
  """
  _, ext = split_ext(pair.image_path)
  if ext.lower() in TIFF_EXTS and spec.scene_pixels:
    scene = _maybe_scene(pair, ext, spec)
    if scene is not None:
      return scene
  image, profile = decode_raster(read_bytes(pair.image_path), ext)
  h, w, _ = image.shape
  _check_size_dtype(profile, h, w, spec)
  band_index = _band_index(image.shape[2], spec)
  mask_values = _read_mask(pair, h, w)
  _, mask = masks.derive(image, mask_values, profile.get("nodata"), spec.mask)
  image = np.ascontiguousarray(image[:, :, band_index])
  profile = dict(profile, descriptions=[profile["descriptions"][i] for i in band_index])
  if image.dtype.kind == "f":
    mask = _with_nan(image, mask, spec)
    if not np.isfinite(image[~mask]).all():
      raise ValueError("infinite values outside the mask")
  return Tile(pair=pair, image=image, mask=mask, profile=profile)


class DecodeTiles(beam.DoFn):
  """:class:`TilePair` -> :class:`Tile` or :class:`scenes.SceneRef`; refusals
  go to the ``dead`` output.

  A mask with no missing pixel has nothing to restore: it is reported as
  skipped (with its reason) rather than failed. A mask that hides every pixel
  leaves nothing to condition on: it fails.
  """

  def __init__(self, spec: DecodeSpec):
    self._spec = spec

  def process(self, pair: TilePair) -> Iterator:
    start = time.perf_counter()
    try:
      tile = decode_pair(pair, self._spec)
    except DecodeError as e:
      counters.inc("failed_decode")
      yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(pair.image_path, "decode", str(e)))
      return
    except (ValueError, MemoryError) as e:
      counters.inc("failed_validate")
      yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(pair.image_path, "validate", str(e)))
      return
    if isinstance(tile, scenes.SceneRef):
      missing, total = int(np.unpackbits(tile.packed_mask).sum()), tile.shape[0] * tile.shape[1]
    else:
      missing, total = int(tile.mask.sum()), tile.mask.size
    if missing in (0, total) and isinstance(tile, scenes.SceneRef):
      scenes.remove_local_copy(tile)
    if missing == 0:
      counters.inc("skipped_clear")
      yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(
          pair.image_path, "validate", "mask has no missing pixel: nothing to restore", SKIPPED))
      return
    if missing == total:
      counters.inc("failed_validate")
      yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(
          pair.image_path, "validate", "mask covers every pixel: nothing to restore from", FAILED))
      return
    counters.inc("decoded")
    counters.record("decode_ms", 1000 * (time.perf_counter() - start))
    if isinstance(tile, scenes.SceneRef):
      counters.inc("scenes")
    else:
      tile.timings["decode"] = time.perf_counter() - start
    yield tile


@dataclasses.dataclass
class Decode(beam.PTransform):
  """Decodes pairs; returns outputs ``tiles`` (:class:`Tile` and, for large
  GeoTIFFs, :class:`scenes.SceneRef`) and ``dead``."""

  spec: DecodeSpec

  def expand(self, pairs):
    return pairs | beam.ParDo(DecodeTiles(self.spec)).with_outputs(DEAD, main="tiles")

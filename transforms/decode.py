"""Stage 2: decode an image and its mask, and refuse what cannot be restored."""

from __future__ import annotations

import dataclasses
import time
from typing import Iterator, Optional, Sequence

import apache_beam as beam
import numpy as np

from transforms import counters, masks
from transforms.raster_io import SUPPORTED_DTYPES, DecodeError, decode_raster, read_bytes, split_ext
from transforms.records import FAILED, SKIPPED, DeadLetter, Tile, TilePair

DEAD = "dead"


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
  """

  mask: masks.MaskSpec = masks.MaskSpec()
  bands: Sequence[int] = ()
  model_bands: Optional[int] = None
  nan_as_missing: bool = False
  max_pixels: int = 40_000 * 40_000


def decode_pair(pair: TilePair, spec: DecodeSpec) -> Tile:
  """Reads and validates one pair.

  Raises:
    DecodeError: the bytes are not a usable raster.
    ValueError: the tile cannot be restored as asked (the message says why).
  """
  _, ext = split_ext(pair.image_path)
  image, profile = decode_raster(read_bytes(pair.image_path), ext)
  if profile["dtype"] not in SUPPORTED_DTYPES:
    raise DecodeError(f"unsupported dtype {profile['dtype']}; supported: {SUPPORTED_DTYPES}")
  h, w, _ = image.shape
  if h * w > spec.max_pixels:
    raise ValueError(f"{w}x{h} pixels exceeds the limit of {spec.max_pixels}")
  mask_values = None
  if pair.mask_path:
    _, mext = split_ext(pair.mask_path)
    try:
      mask_values, _ = decode_raster(read_bytes(pair.mask_path), mext)
    except DecodeError as e:
      raise DecodeError(f"mask {pair.mask_path}: {e}") from e
    if mask_values.shape[:2] != (h, w):
      raise ValueError(f"mask is {mask_values.shape[1]}x{mask_values.shape[0]} "
                       f"but the image is {w}x{h}")
  image, mask = masks.derive(image, mask_values, profile.get("nodata"), spec.mask)
  if spec.mask.band is not None:
    profile = dict(profile, descriptions=[d for i, d in enumerate(profile["descriptions"])
                                          if i != spec.mask.band - 1])
  if spec.bands:
    bad = [b for b in spec.bands if not 1 <= b <= image.shape[2]]
    if bad:
      raise ValueError(f"--bands {bad} out of range: the image has {image.shape[2]} bands")
    idx = [b - 1 for b in spec.bands]
    image = np.ascontiguousarray(image[:, :, idx])
    profile = dict(profile, descriptions=[profile["descriptions"][i] for i in idx])
  if spec.model_bands is not None and image.shape[2] != spec.model_bands:
    raise ValueError(f"the image has {image.shape[2]} bands but the model takes "
                     f"{spec.model_bands}; select bands with --bands")
  if image.dtype.kind == "f":
    nan = np.isnan(image).any(axis=2)
    if spec.nan_as_missing:
      mask = mask | nan
    elif (nan & ~mask).any():
      raise ValueError(f"{int((nan & ~mask).sum())} NaN pixels outside the mask; "
                       "mask them or pass --nan-as-missing")
    if not np.isfinite(image[~mask]).all():
      raise ValueError("infinite values outside the mask")
  return Tile(pair=pair, image=image, mask=mask, profile=profile)


class DecodeTiles(beam.DoFn):
  """:class:`TilePair` -> :class:`Tile`; refusals go to the ``dead`` output.

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
    missing = int(tile.mask.sum())
    if missing == 0:
      counters.inc("skipped_clear")
      yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(
          pair.image_path, "validate", "mask has no missing pixel: nothing to restore", SKIPPED))
      return
    if missing == tile.mask.size:
      counters.inc("failed_validate")
      yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(
          pair.image_path, "validate", "mask covers every pixel: nothing to restore from", FAILED))
      return
    tile.timings["decode"] = time.perf_counter() - start
    counters.inc("decoded")
    counters.record("decode_ms", 1000 * tile.timings["decode"])
    yield tile


@dataclasses.dataclass
class Decode(beam.PTransform):
  """Decodes pairs; returns outputs ``tiles`` and ``dead``."""

  spec: DecodeSpec

  def expand(self, pairs):
    return pairs | beam.ParDo(DecodeTiles(self.spec)).with_outputs(DEAD, main="tiles")

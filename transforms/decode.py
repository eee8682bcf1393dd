"""Stage 2: decode an image and its mask, and refuse what cannot be restored."""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Iterator, Optional, Sequence, Union

import apache_beam as beam
import numpy as np

from transforms import bands as bands_lib
from transforms import counters, masks, raster_open, scenes
from transforms.pooled import TIMESTAMP, WINDOW, PooledDoFn, pool_threads, small_file
from transforms.raster_io import SUPPORTED_DTYPES, TIFF_EXTS, DecodeError, gdal_driver, select_bands, split_ext
from transforms.records import DEAD, FAILED, SKIPPED, DeadLetter, Tile, TilePair

# Remote TIFFs smaller than this are decoded from their bytes, never as scenes.
SMALL_REMOTE_BYTES = 64 << 20
# --max-pixels by default: 16384² (a whole Sentinel-2 or Landsat scene fits).
DEFAULT_MAX_PIXELS = 16384 * 16384


@dataclasses.dataclass(frozen=True)
class DecodeSpec:
  """What decoding expects of each tile.

  Attributes:
    mask: How the mask is derived.
    bands: 1-based band indices to keep (``--bands 4,3,2``), or empty for all.
    model_bands: How many bands the model takes; other counts are refused.
    nan_as_missing: Treat NaN pixels of float input as missing instead of
      refusing the tile.
    max_pixels: Refuse images and masks whose header says more pixels than
      this (height * width), before decoding (``--max-pixels``).
    scene_pixels: GeoTIFFs larger than this take the streamed large-scene
      path (:mod:`transforms.scenes`).
    value_range: ``--value-range`` (LO, HI), or None. Float input without
      it must hold known values in 0…1 (the default range), else it is refused.
    extra_bands: How the bands beyond the model's are filled (``--extra-bands``:
      ``guided`` or ``model``, see :mod:`transforms.bands`); every band is kept.
  """

  mask: masks.MaskSpec = masks.MaskSpec()
  bands: Sequence[int] = ()
  model_bands: Optional[int] = None
  nan_as_missing: bool = False
  max_pixels: int = DEFAULT_MAX_PIXELS
  scene_pixels: int = 2048 * 2048
  value_range: Optional[tuple[float, float]] = None
  extra_bands: str = bands_lib.DEFAULT_METHOD

  def __post_init__(self):
    if self.extra_bands not in bands_lib.METHODS:
      raise ValueError(f"--extra-bands must be one of {', '.join(bands_lib.METHODS)}, got {self.extra_bands!r}")
    bad = [b for b in self.bands if not isinstance(b, int) or b < 1]
    if bad:
      raise ValueError(f"--bands are 1-based band numbers; got {bad}")
    if len(set(self.bands)) != len(self.bands):
      raise ValueError(f"--bands repeats a band: {list(self.bands)}")
    if self.max_pixels is None or self.max_pixels < 1:
      raise ValueError(f"--max-pixels must be a positive number of pixels, got {self.max_pixels}")
    if self.value_range is not None:
      lo, hi = (float(v) for v in self.value_range)
      if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        raise ValueError(f"--value-range must be two finite numbers LO,HI with LO < HI, got {lo},{hi}")


def _read_mask(pair: TilePair, h: int, w: int, spec: DecodeSpec) -> Optional[np.ndarray]:
  if not pair.mask_path:
    return None
  try:
    return raster_open.read_mask_file(pair.mask_path, 0, spec.max_pixels, SMALL_REMOTE_BYTES, (h, w))
  except DecodeError as e:
    raise DecodeError(f"mask {pair.mask_path}: {e}") from e


def _check_size_dtype(profile: dict, h: int, w: int, spec: DecodeSpec) -> None:
  if profile["dtype"] not in SUPPORTED_DTYPES:
    raise DecodeError(f"unsupported dtype {profile['dtype']}; supported: {SUPPORTED_DTYPES}")
  if h * w > spec.max_pixels:
    raise ValueError(f"{w}x{h} pixels exceeds the limit of {spec.max_pixels} (--max-pixels)")


def _band_index(count: int, spec: DecodeSpec) -> tuple[int, ...]:
  """0-based bands the model restores, after removing a probability band:
  ``--bands``, else the first ``model_bands`` (the others are extra bands)."""
  if spec.mask.band is not None and not 1 <= spec.mask.band <= count:
    raise ValueError(f"mask band {spec.mask.band} out of range: the image has {count} bands")
  keep = [i for i in range(count) if spec.mask.band is None or i != spec.mask.band - 1]
  if spec.bands:
    bad = [b for b in spec.bands if not 1 <= b <= len(keep)]
    if bad:
      raise ValueError(f"--bands {bad} out of range: the image has {len(keep)} bands")
    keep = [keep[b - 1] for b in spec.bands]
  elif spec.model_bands is not None and len(keep) > spec.model_bands:
    keep = keep[:spec.model_bands]  # The rest are extra bands (transforms.bands).
  if spec.model_bands is not None and len(keep) != spec.model_bands:
    raise ValueError(f"the image has {len(keep)} bands but the model takes "
                     f"{spec.model_bands}; select bands with --bands")
  return tuple(keep)


def _layout(count: int, band_index: tuple[int, ...], spec: DecodeSpec):
  """The image's :class:`transforms.bands.BandLayout`, or None when the model takes it whole."""
  return bands_lib.layout_of(count, band_index, spec.mask.band, spec.extra_bands)


def _checked(values: np.ndarray, layout) -> np.ndarray:
  """The bands whose values are checked (NaN, range): all but a probability band."""
  if layout is None:
    return values
  return values[:, :, list(layout.model) + list(layout.extra)]


def nan_is_declared(profile: dict, spec: DecodeSpec) -> bool:
  """Whether NaN is this image's no-data value: its own declared value, or ``--nodata nan``."""
  return any(
      v is not None and isinstance(v, float) and math.isnan(v) for v in (profile.get("nodata"), spec.mask.nodata))


def _nan_footprint(values: np.ndarray, profile: dict, spec: DecodeSpec) -> np.ndarray:
  """``[H, W]``: pixels NaN in every band where NaN is the declared no-data (else none)."""
  if spec.nan_as_missing or not nan_is_declared(profile, spec):
    return np.zeros(values.shape[:2], bool)
  return np.isnan(values).all(axis=2)


def _with_nan(values: np.ndarray,
              mask: np.ndarray,
              spec: DecodeSpec,
              where: str = "",
              footprint: Optional[np.ndarray] = None) -> np.ndarray:
  """The mask with NaN pixels of float ``values`` added (``--nan-as-missing``).

  ``footprint`` (:func:`_nan_footprint`): the pixels NaN in every band where
  NaN is the declared no-data value. They are outside the footprint
  (:mod:`transforms.footprint` keeps them as they are), not an error.

  Raises:
    ValueError: NaN outside the mask (and the footprint), without ``--nan-as-missing``.
  """
  nan = np.isnan(values).any(axis=2)
  if spec.nan_as_missing:
    return mask | nan
  outside = nan & ~mask
  if footprint is not None:
    outside &= ~footprint
  if outside.any():
    raise ValueError(f"{int(outside.sum())} NaN pixels outside the mask{where}; "
                     "mask them or pass --nan-as-missing")
  return mask


def _check_float(values: np.ndarray, mask: np.ndarray, spec: DecodeSpec, where: str = "") -> None:
  """Known float values must be finite and, without ``--value-range``, in 0…1.

  ``values`` is ``[H, W, C]`` (the bands to restore), ``mask`` ``[H, W]``.
  """
  known = values[~mask]
  if not np.isfinite(known).all():
    raise ValueError(f"infinite values outside the mask{where}")
  if spec.value_range is None and known.size and (known.min() < 0.0 or known.max() > 1.0):
    raise ValueError(f"float values span {float(known.min()):g}…{float(known.max()):g}{where}, "
                     "outside the default 0…1: pass --value-range LO,HI")


def _open_scene(pair: TilePair, local: str, profile: dict, spec: DecodeSpec) -> scenes.SceneRef:
  """Validates a large GeoTIFF by rows and returns it by reference."""
  import rasterio  # pylint: disable=import-outside-toplevel
  h, w = profile["height"], profile["width"]
  _check_size_dtype(profile, h, w, spec)
  band_index = _band_index(profile["count"], spec)
  layout = _layout(profile["count"], band_index, spec)
  checked = band_index if layout is None else list(layout.model) + list(layout.extra)
  mask_values = _read_mask(pair, h, w, spec)
  mask = np.zeros((h, w), bool)
  with scenes.gdal_env(), rasterio.open(local, driver=gdal_driver(pair.image_path)) as src:
    for r0 in range(0, h, scenes.STRIPE_ROWS):
      r1 = min(h, r0 + scenes.STRIPE_ROWS)
      rows = scenes.read_rows(src, r0, r1, tuple(range(profile["count"])))
      part = None if mask_values is None else mask_values[r0:r1]
      m = masks.derive(rows, part, profile.get("nodata"), dataclasses.replace(spec.mask, dilate=0))
      if rows.dtype.kind == "f":
        values = rows[:, :, checked]
        outside = _nan_footprint(values, profile, spec)
        m = _with_nan(values, m, spec, f" in rows {r0}-{r1}", outside)
        _check_float(values, m | outside, spec, f" in rows {r0}-{r1}")
      mask[r0:r1] = m
  del mask_values
  mask = masks.dilate(mask, spec.mask.dilate)
  if layout is not None:  # Every band comes out: the profile stays the input's.
    return scenes.SceneRef(pair=pair,
                           local_path=local,
                           profile=profile,
                           band_index=band_index,
                           packed_mask=np.packbits(mask, axis=None),
                           layout=layout,
                           notes={"bands": layout.describe()})
  return scenes.SceneRef(pair=pair,
                         local_path=local,
                         profile=select_bands(profile, band_index),
                         band_index=band_index,
                         packed_mask=np.packbits(mask, axis=None))


def _decode_tiff(pair: TilePair, ext: str, spec: DecodeSpec) -> Union[Tile, scenes.SceneRef, tuple]:
  """A TIFF from its path: the header is checked before any pixel is read.

  Returns a SceneRef for GeoTIFFs over ``scene_pixels`` (remote files under
  ``SMALL_REMOTE_BYTES`` never are), else ``(image [H, W, C], profile)``.
  """
  import rasterio  # pylint: disable=import-outside-toplevel
  opener = raster_open.OpenTiff(pair.image_path, pair.size_bytes, spec.max_pixels, SMALL_REMOTE_BYTES)
  keep_copy = False
  try:
    with opener as src:
      profile = raster_open.tiff_header(src, ext, spec.max_pixels)
      _check_size_dtype(profile, profile["height"], profile["width"], spec)
      if (spec.scene_pixels and opener.local_path and profile["height"] * profile["width"] > spec.scene_pixels):
        try:
          scene = _open_scene(pair, opener.local_path, profile, spec)
        except rasterio.errors.RasterioError as e:  # E.g. a truncated scene: its rows fail to read.
          raise DecodeError(f"not a readable TIFF: {e.__cause__ or e}") from e
        keep_copy = True
        return scene
      try:
        arr = src.read()  # [C, H, W]
      except rasterio.errors.RasterioError as e:
        raise DecodeError(f"not a readable TIFF: {e}") from e
    return np.ascontiguousarray(np.moveaxis(arr, 0, -1)), profile
  finally:
    if not keep_copy:
      opener.remove_temp()


def decode_pair(pair: TilePair, spec: DecodeSpec) -> Union[Tile, scenes.SceneRef]:
  """Reads and validates one pair; large GeoTIFFs come back by reference.

  Nothing is opened before the image and mask are known to be regular files,
  and no pixel is decoded before the header's pixel count is checked.

  Raises:
    DecodeError: the bytes are not a usable raster.
    ValueError: the tile cannot be restored as asked (the message says why).
  """
  raster_open.check_regular(pair.image_path)
  if pair.mask_path:
    try:
      raster_open.check_regular(pair.mask_path)
    except DecodeError as e:
      raise DecodeError(f"mask: {e}") from e
  _, ext = split_ext(pair.image_path)
  if ext.lower() in raster_open.JPEG_EXTS:
    raise ValueError("JPEG input is refused: it is lossy, so writing the restored tile back as "
                     "JPEG would change every known pixel; convert it to PNG or TIFF first")
  if ext.lower() in TIFF_EXTS:
    decoded = _decode_tiff(pair, ext, spec)
    if isinstance(decoded, scenes.SceneRef):
      return decoded
    image, profile = decoded
  else:
    image, profile = raster_open.decode_pil_file(pair.image_path, ext, spec.max_pixels)
  h, w, _ = image.shape
  _check_size_dtype(profile, h, w, spec)
  band_index = _band_index(image.shape[2], spec)
  layout = _layout(image.shape[2], band_index, spec)
  mask_values = _read_mask(pair, h, w, spec)
  mask = masks.derive(image, mask_values, profile.get("nodata"), spec.mask)
  if image.dtype.kind == "f":
    values = _checked(image, layout)
    outside = _nan_footprint(values, profile, spec)
    mask = _with_nan(values, mask, spec, footprint=outside)
    _check_float(values, mask | outside, spec)
  if layout is not None:  # Every band comes out: the profile stays the input's (transforms.bands).
    return Tile(pair=pair,
                image=np.ascontiguousarray(image[:, :, band_index]),
                mask=mask,
                profile=profile,
                full=image,
                layout=layout,
                notes={"bands": layout.describe()})
  return Tile(pair=pair, image=image, mask=mask, profile=profile)


def refusal(e: Exception) -> tuple[str, str]:
  """(stage, reason) of a per-input failure while reading and validating.

  Any exception of one input's decoding is that input's failure (a hostile
  file may make any library raise anything); it never ends the run.
  """
  if isinstance(e, DecodeError):
    return "decode", str(e)
  if isinstance(e, MemoryError):
    return "validate", f"out of memory decoding it: {e}"
  if isinstance(e, ValueError):
    return "validate", str(e)
  if isinstance(e, OSError):
    return "decode", f"cannot read it: {e}"
  return "decode", f"{type(e).__name__}: {e}"


class DecodeTiles(PooledDoFn):
  """:class:`TilePair` -> :class:`Tile` or :class:`scenes.SceneRef`; refusals
  go to the ``dead`` output.

  A mask with no missing pixel has nothing to restore: it is reported as
  skipped (with its reason) rather than failed. A mask that hides every pixel
  leaves nothing to condition on: it fails. Small inputs (up to
  :data:`transforms.pooled.POOL_MAX_BYTES`) are decoded on the DoFn's thread
  pool (:class:`transforms.pooled.PooledDoFn`), others here.
  """

  STEP = "decode"

  def __init__(self, spec: DecodeSpec, threads: Optional[int] = None):
    super().__init__(threads)
    self._spec = spec

  def process(self, pair: TilePair, window=WINDOW, timestamp=TIMESTAMP) -> Iterator:
    # A large file may be a streamed scene, whose whole mask is held while it is decoded.
    yield from self.pooled(self._decode, (pair,), window, timestamp, on_pool=small_file(pair.size_bytes))

  def _decode(self, pair: TilePair) -> Iterator:
    start = time.perf_counter()
    try:
      tile = decode_pair(pair, self._spec)
    except Exception as e:  # pylint: disable=broad-except
      stage, reason = refusal(e)
      counters.inc(f"failed_{stage}")
      yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(pair.image_path, stage, reason))
      return
    if isinstance(tile, scenes.SceneRef):
      missing, total = int(np.unpackbits(tile.packed_mask).sum()), tile.shape[0] * tile.shape[1]
    else:
      missing, total = int(tile.mask.sum()), tile.mask.size
    if missing in (0, total) and isinstance(tile, scenes.SceneRef):
      scenes.remove_local_copy(tile)
    if missing == 0:
      counters.inc("skipped_clear")
      yield beam.pvalue.TaggedOutput(
          DEAD, DeadLetter(pair.image_path, "validate", "mask has no missing pixel: nothing to restore", SKIPPED))
      return
    if missing == total:
      counters.inc("failed_validate")
      yield beam.pvalue.TaggedOutput(
          DEAD, DeadLetter(pair.image_path, "validate", "mask covers every pixel: nothing to restore from", FAILED))
      return
    counters.inc("decoded")
    counters.record("decode_ms", 1000 * (time.perf_counter() - start))
    if isinstance(tile, scenes.SceneRef):
      counters.inc("scenes")
    else:
      tile = dataclasses.replace(tile, timings=dict(tile.timings, decode=time.perf_counter() - start))
    yield tile


@dataclasses.dataclass
class Decode(beam.PTransform):
  """``(pairs, after)`` -> outputs ``tiles`` (:class:`Tile` and, for large
  GeoTIFFs, :class:`scenes.SceneRef`) and ``dead``.

  ``after`` is a singleton the next step reads as a side input (the
  neighbours' headers). Decoding waits for it too, so that the local runners
  (the FnApiRunner) fuse decoding with the steps after it and a decoded tile
  goes on to be restored and written at once. Otherwise they materialise
  every decoded tile of the run first, in memory: 0.9 GB for 512 tiles of
  256² uint16.
  """

  spec: DecodeSpec

  def expand(self, inputs):
    pairs, after = inputs
    pairs = pairs | "AfterSideInput" >> beam.Map(_first, beam.pvalue.AsSingleton(after))
    return pairs | beam.ParDo(DecodeTiles(self.spec, pool_threads(pairs.pipeline))).with_outputs(DEAD, main="tiles")


def _first(pair, _after):
  return pair

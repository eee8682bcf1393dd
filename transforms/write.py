"""Stage 6: write each restored tile and its provenance, and measure it.

Output names are deterministic (``restored/{stem}{ext}``), in the input's
format, dtype and band count, with its georeferencing, no-data value and band
descriptions; GeoTIFFs keep the input's compression and overviews, or are laid
out as ``--cog``/``--co`` say (:mod:`transforms.geotiff_out`). Beside each,
``provenance/{stem}.tif`` says where each pixel came from
(:mod:`transforms.provenance`); it is written first, so a finished output
always has one. Writes are atomic, and the two are written together
(:func:`transforms.atomic_write.write_all_atomic`): a local write that fails
(disk full) leaves the previous output and provenance, if any, as they were.

Metrics are on the 0…1 scale of ``--value-range`` (see :mod:`transforms.metrics`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Iterator, Optional

import apache_beam as beam
import numpy as np

from transforms import bands, counters, geotiff_out, metrics, provenance
from transforms.incremental import output_path, provenance_tags
from transforms.match import mask_path_for
from transforms.pooled import TIMESTAMP, WINDOW, PooledDoFn, small_tile
from transforms.atomic_write import write_all_atomic
from transforms.raster_io import TIFF_EXTS, DecodeError, decode_raster, encode_raster, read_bytes, split_ext
from transforms.raster_open import check_regular
from transforms.records import DEAD, RESTORED, DeadLetter, RestoredTile, TileResult
from transforms.scaling import to_unit, value_range

# Warn when more than this share of a tile's known pixels is outside --value-range.
OUTSIDE_WARN = 0.01


@dataclasses.dataclass(frozen=True)
class WriteSpec:
  """Where and how tiles are written and measured.

  Attributes:
    output_dir: The run's output folder.
    model_version: Recorded in each tile's metadata.
    evaluate: The input's own pixels under the mask are the truth (clear
      tiles with artificial masks): report PSNR/SSIM/MAE/SAM.
    reference_template: A clear acquisition of the same place per tile
      (``{stem}``, ``{dir}``): report the same figures against it.
    value_range: The 0…1 scaling, or None for the dtype's range.
    window: ``(size, overlap)`` of the model's windows, for the block metric
      (:func:`transforms.metrics.block_score`); None leaves it out.
    tiff: How GeoTIFF outputs are laid out (``--cog``, ``--co``).
    weights_sha256: The model's weights hash, recorded beside its version.
  """

  output_dir: str
  model_version: str
  evaluate: bool = False
  reference_template: Optional[str] = None
  value_range: Optional[tuple[float, float]] = None
  window: Optional[tuple[int, int]] = None
  tiff: geotiff_out.TiffSpec = geotiff_out.TiffSpec()
  weights_sha256: str = ""


def outside_range(image: np.ndarray,
                  mask: np.ndarray,
                  vrange: tuple[float, float],
                  nodata: Optional[float] = None) -> float:
  """Share of the known (unmasked, not no-data) pixel values outside ``vrange``."""
  lo, hi = vrange
  if image.dtype.kind in "iu" and lo <= np.iinfo(image.dtype).min and np.iinfo(image.dtype).max <= hi:
    return 0.0  # No value of the dtype can be outside (e.g. uint16 on 0…65535).
  known = ~mask & ~provenance.nodata_pixels(image, nodata)
  values = image[known]
  if values.size == 0:
    return 0.0
  return float(np.mean((values < lo) | (values > hi)))


def stretched_quality(restored: np.ndarray, truth: np.ndarray, known: np.ndarray, mask: np.ndarray) -> dict[str, float]:
  """PSNR and MAE over the missing pixels on the benchmark's scale.

  Each band is stretched to 0…1 between the 0.1 and 99.9 percentiles of the
  tile's known pixels (the README's quality table stretches each scene so),
  so these figures compare with it, whatever ``--value-range`` is.

  Args:
    restored, truth: ``[H, W, C]`` in the input's scale.
    known: ``[H, W]`` bool, the pixels the stretch is taken from.
    mask: ``[H, W]`` bool, where figures are taken.
  """
  px = truth[known].astype(np.float64)
  if px.size == 0 or not mask.any():
    return {}
  lo, hi = np.percentile(px, 0.1, axis=0), np.percentile(px, 99.9, axis=0)
  span = np.where(hi > lo, hi - lo, 1.0)
  r = np.clip((restored[mask].astype(np.float64) - lo) / span, 0, 1)
  t = np.clip((truth[mask].astype(np.float64) - lo) / span, 0, 1)
  mse = float(np.mean((r - t)**2))
  return {
      "psnr_stretched": float(10 * np.log10(1.0 / mse)) if mse > 0 else float("inf"),
      "mae_stretched": float(np.mean(np.abs(r - t)))
  }


def encode_output(item: RestoredTile, spec: WriteSpec, tags: dict) -> bytes:
  """The restored tile's bytes: GeoTIFF laid out per ``spec.tiff``, else the input's format."""
  profile = item.tile.profile
  if profile["ext"].lower() in TIFF_EXTS:
    return geotiff_out.encode(item.restored, profile, tags, spec.tiff)
  return encode_raster(item.restored, profile, tags)


def provenance_of(item: RestoredTile) -> np.ndarray:
  """The engine's provenance classes, or classes derived from the mask."""
  tile = item.tile
  if item.provenance is not None:
    return provenance.check(item.provenance, tile.mask.shape)
  return provenance.derive(item.restored, tile.mask, tile.profile.get("nodata"))


def measure(item: RestoredTile, spec: WriteSpec) -> dict:
  """The tile's metrics (see :mod:`transforms.metrics`)."""
  tile = item.tile
  lo, hi = value_range(tile.profile["dtype"], spec.value_range)
  unit = to_unit(item.restored, lo, hi)
  out = metrics.hole_stats(tile.mask)
  out["windows"] = item.windows
  out["value_scale"] = [lo, hi]
  out["outside_value_range"] = outside_range(tile.image, tile.mask, (lo, hi), tile.profile.get("nodata"))
  if out["outside_value_range"] > OUTSIDE_WARN:
    counters.inc("tiles_outside_value_range")
    logging.getLogger(__name__).warning(
        "%s: %.1f %% of the known pixels are outside the value range %g…%g (--value-range)", tile.pair.image_path,
        100 * out["outside_value_range"], lo, hi)
  out.update(item.metrics)  # unfilled, guided … (transforms.composite.finish_tile)
  out["seam"] = metrics.seam_score(unit, tile.mask)
  if spec.window:
    out["block"] = metrics.block_score(unit, tile.mask, *spec.window)
  truth = raw = None
  if spec.reference_template:
    ref_path = mask_path_for(tile.pair.image_path, spec.reference_template)
    check_regular(ref_path)  # A FIFO would block the read forever.
    ref, _ = decode_raster(read_bytes(ref_path), split_ext(ref_path)[1])
    if ref.shape != item.restored.shape:
      raise ValueError(f"reference {ref_path} is {ref.shape}, the tile {item.restored.shape}")
    truth, raw = to_unit(ref, lo, hi), ref
  elif spec.evaluate:
    raw = bands.full_image(tile)  # Every band: the output has them all (transforms.bands).
    truth = to_unit(raw, lo, hi)
  if truth is not None:
    out.update(metrics.quality(unit, truth, tile.mask))
    if unit.shape[2] > 1:
      out["psnr_bands"] = bands.per_band_psnr(unit, truth, tile.mask)
    known = ~tile.mask & ~provenance.nodata_pixels(raw, tile.profile.get("nodata"))
    out.update(stretched_quality(item.restored, raw, known, tile.mask))
  return out


class WriteTiles(PooledDoFn):
  """:class:`RestoredTile` -> :class:`TileResult`; failures go to ``dead``.

  Small tiles are encoded, written and measured on the DoFn's thread pool
  (:class:`transforms.pooled.PooledDoFn`), larger ones here.
  """

  STEP = "write"

  def __init__(self, spec: WriteSpec, threads: Optional[int] = None):
    super().__init__(threads)
    self._spec = spec

  def process(self, item: RestoredTile, window=WINDOW, timestamp=TIMESTAMP) -> Iterator:
    yield from self.pooled(self._write, (item,), window, timestamp, on_pool=small_tile(item.tile))

  def _write(self, item: RestoredTile) -> Iterator:
    tile = item.tile
    start = time.perf_counter()
    path = output_path(self._spec.output_dir, tile.pair.image_path)
    try:
      classes = provenance_of(item)
      # Both encoded before either is written: an output that cannot be encoded leaves no orphan provenance.
      provenance_bytes = provenance.encode(classes, tile.profile)
      data = encode_output(item, self._spec,
                           provenance_tags(tile.pair, self._spec.model_version, self._spec.weights_sha256))
      # Provenance first, the output last; a write that fails changes neither (locally; see write_all_atomic).
      write_all_atomic([(provenance.provenance_path(self._spec.output_dir, tile.pair.stem), provenance_bytes),
                        (path, data)])
    except Exception as e:  # pylint: disable=broad-except
      counters.inc("failed_write")
      yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(tile.pair.image_path, "write", f"{type(e).__name__}: {e}"))
      return
    timings = dict(tile.timings, write=time.perf_counter() - start)  # The input is not modified.
    try:
      measured = measure(item, self._spec)
    except (ValueError, DecodeError, OSError) as e:
      measured = {"metrics_error": str(e)}
    counts = np.bincount(classes.ravel(), minlength=256)  # uint8 classes: np.unique's counts, sorted, 10x faster.
    measured["provenance"] = {provenance.CLASSES[int(k)]: int(counts[k]) for k in np.flatnonzero(counts)}
    measured["seconds"] = {k: round(v, 6) for k, v in timings.items()}
    counters.inc("restored")
    counters.record("write_ms", 1000 * timings["write"])
    counters.record("coverage_permille", 1000 * measured.get("coverage", 0.0))
    yield TileResult(path=tile.pair.image_path, stem=tile.pair.stem, outcome=RESTORED, output=path, metrics=measured)

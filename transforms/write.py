"""Stage 6: write each restored tile and measure it.

Output names are deterministic (``restored/{stem}{ext}``), in the input's
format, dtype and band count, with its georeferencing, no-data value and band
descriptions. Writes are atomic (see :mod:`transforms.raster_io`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Iterator, Optional

import apache_beam as beam

from transforms import counters, metrics
from transforms.incremental import output_path, provenance_tags
from transforms.match import mask_path_for
from transforms.raster_io import (DecodeError, decode_raster, encode_raster, read_bytes, split_ext,
                                  write_bytes_atomic)
from transforms.records import RESTORED, DeadLetter, RestoredTile, TileResult
from transforms.window import to_unit, value_range

DEAD = "dead"


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
  """

  output_dir: str
  model_version: str
  evaluate: bool = False
  reference_template: Optional[str] = None
  value_range: Optional[tuple[float, float]] = None


def measure(item: RestoredTile, spec: WriteSpec) -> dict:
  """The tile's metrics (see :mod:`transforms.metrics`)."""
  tile = item.tile
  lo, hi = value_range(tile.profile["dtype"], spec.value_range)
  unit = to_unit(item.restored, lo, hi)
  out = metrics.hole_stats(tile.mask)
  out["windows"] = item.windows
  out.update(item.metrics)  # unfilled, guided … (transforms.composite.finish_tile)
  out["seam"] = metrics.seam_score(unit, tile.mask)
  truth = None
  if spec.reference_template:
    ref_path = mask_path_for(tile.pair.image_path, spec.reference_template)
    ref, _ = decode_raster(read_bytes(ref_path), split_ext(ref_path)[1])
    if ref.shape != item.restored.shape:
      raise ValueError(f"reference {ref_path} is {ref.shape}, the tile {item.restored.shape}")
    truth = to_unit(ref, lo, hi)
  elif spec.evaluate:
    truth = to_unit(tile.image, lo, hi)
  if truth is not None:
    out.update(metrics.quality(unit, truth, tile.mask))
  return out


class WriteTiles(beam.DoFn):
  """:class:`RestoredTile` -> :class:`TileResult`; failures go to ``dead``."""

  def __init__(self, spec: WriteSpec):
    self._spec = spec

  def process(self, item: RestoredTile) -> Iterator:
    tile = item.tile
    start = time.perf_counter()
    path = output_path(self._spec.output_dir, tile.pair.image_path)
    try:
      data = encode_raster(item.restored, tile.profile, provenance_tags(tile.pair, self._spec.model_version))
      write_bytes_atomic(path, data)
    except Exception as e:  # pylint: disable=broad-except
      counters.inc("failed_write")
      yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(tile.pair.image_path, "write", f"{type(e).__name__}: {e}"))
      return
    tile.timings["write"] = time.perf_counter() - start
    try:
      measured = measure(item, self._spec)
    except (ValueError, DecodeError, OSError) as e:
      measured = {"metrics_error": str(e)}
    measured["seconds"] = {k: round(v, 6) for k, v in tile.timings.items()}
    counters.inc("restored")
    counters.record("write_ms", 1000 * tile.timings["write"])
    counters.record("coverage_permille", 1000 * measured["coverage"])
    yield TileResult(path=tile.pair.image_path, stem=tile.pair.stem, outcome=RESTORED,
                     output=path, metrics=measured)


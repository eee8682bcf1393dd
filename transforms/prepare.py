"""Between decode and window: the footprint, the fill limit, and the guide.

:class:`PrepareTiles` takes each decoded :class:`Tile` (or streamed
:class:`transforms.scenes.SceneRef`) and returns a new one whose mask holds
only the pixels to fill (no-data and pixels beyond ``--max-fill-distance``
taken out, see :mod:`transforms.footprint`), with its guide attached
(:mod:`transforms.guide`). Refusals go to ``dead``:

* the mask covered only no-data: skipped (nothing to restore);
* no known pixel inside the footprint: failed ("no known pixel");
* a guide that does not overlap, or whose bands or dtype do not fit: failed.

Tiles of one grid (a pre-cut archive) get their context computed over their
neighbours too (:mod:`transforms.neighbours`; ``headers`` side input).
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Optional

import apache_beam as beam
import numpy as np

from transforms import bands, counters, footprint, grid_context, guide, header_index, neighbours, scene_context, scenes
from transforms.pooled import TIMESTAMP, WINDOW, PooledDoFn, pool_threads, small_tile
from transforms.records import DEAD, FAILED, SKIPPED, DeadLetter, Tile
from transforms.scaling import to_unit, value_range


@dataclasses.dataclass(frozen=True)
class PrepareSpec:
  """What preparing does.

  Attributes:
    footprint: The footprint and the fill limit.
    guide: Where guides are, or None for no guide.
    neighbours: How far a tile's context reaches into neighbouring tiles of
      the same grid (pre-cut archives), or None.
    value_range: The 0…1 scaling, or None for the dtype's range.
  """

  footprint: footprint.FootprintSpec = footprint.FootprintSpec()
  guide: Optional[guide.GuideSpec] = None
  neighbours: Optional[neighbours.NeighbourSpec] = None
  value_range: Optional[tuple[float, float]] = None


def _attach_guide(tile: Tile, spec: guide.GuideSpec) -> Tile:
  """The tile with its aligned guide (or notes saying why it has none)."""
  ref = guide.resolve(tile.pair.image_path, spec)
  if ref is None:
    counters.inc("unguided_missing_guide")
    return dataclasses.replace(tile, notes=dict(tile.notes, guided=False, guide="missing"))
  spec = bands.for_model_bands(spec, tile.layout)
  h, w = tile.mask.shape
  values, valid = guide.read_whole(ref, guide.Grid.of(tile.profile, h, w), tile.image.shape[2], tile.profile["dtype"],
                                   spec)
  if not ((valid >= 1.0) & tile.mask).any():
    counters.inc("unguided_cloudy_guide")
    return dataclasses.replace(tile,
                               notes=dict(tile.notes,
                                          guided=False,
                                          guide_path=ref.path,
                                          guide="cloudy or absent over every hole"))
  counters.inc("guided")
  return dataclasses.replace(tile,
                             guide=values,
                             guide_valid=valid,
                             notes=dict(tile.notes, guided=True, guide_path=ref.path))


def _with_neighbours(tile: Tile, spec: PrepareSpec, headers) -> Tile:
  """The tile with its context computed over its neighbours (when it has any)."""
  index = header_index.index_for(headers)  # Built once a process: not a scan of every input a tile.
  me = index.find(tile.pair.image_path)
  if me is None or (me.height, me.width) != tile.mask.shape:
    return tile
  lo, hi = value_range(tile.profile["dtype"], spec.value_range)
  nearby = index.candidates(me, spec.neighbours.margin)  # Every possible neighbour, in reading order.
  unit, known = to_unit(tile.image, lo, hi), tile.known().astype(np.float32)
  args = (me, nearby, unit, known, bands.for_model_bands(spec.neighbours, tile.layout), lo, hi)
  # Tiles of a regular grid share one pyramid per block of tiles (bit-identical).
  shared, context = grid_context.shared_context(*args)
  if not shared:
    context = neighbours.extended_context(*args)
  if context is None:
    return tile
  counters.inc("context_with_neighbours")
  return dataclasses.replace(tile, context=context, notes=dict(tile.notes, neighbours=True))


def prepare_tile(tile: Tile, spec: PrepareSpec, headers=()) -> Tile:
  fp = footprint.apply(tile.image, tile.mask, tile.profile.get("nodata"), spec.footprint)
  out = dataclasses.replace(tile,
                            mask=fp.mask,
                            nodata=fp.nodata,
                            unfilled=fp.unfilled,
                            timings=dict(tile.timings),
                            notes=dict(tile.notes))
  if spec.neighbours is not None and spec.neighbours.margin > 0 and headers and fp.mask.any():
    out = _with_neighbours(out, spec, headers)
  if spec.guide is not None and fp.mask.any():
    out = _attach_guide(out, spec.guide)
  return out


def _scene_guide(ref: scenes.SceneRef, spec: guide.GuideSpec) -> scenes.SceneRef:
  """The scene with its resolved guide; opening it checks overlap, bands and dtype."""
  g = guide.resolve(ref.pair.image_path, spec)
  if g is None:
    counters.inc("unguided_missing_guide")
    return dataclasses.replace(ref, notes=dict(ref.notes, guided=False, guide="missing"))
  h, w = ref.shape
  with guide.AlignedGuide(g, guide.Grid.of(ref.profile, h, w), len(ref.band_index), ref.profile["dtype"],
                          bands.for_model_bands(spec, ref.layout)):
    pass
  counters.inc("guided")
  return dataclasses.replace(ref, guide=g, notes=dict(ref.notes, guided=True, guide_path=g.path))


def _counts(item) -> tuple[int, int, bool]:
  """(pixels to fill, known pixels, any unfilled)."""
  if not scenes.is_scene(item):
    return int(item.mask.sum()), int(item.known().sum()), item.unfilled is not None
  return (int(np.unpackbits(item.packed_mask).sum()), int(item.known().sum()), item.packed_unfilled is not None)


class PrepareTiles(PooledDoFn):
  """Tile/SceneRef -> the same, prepared; refusals go to ``dead``.

  Small tiles are prepared on the DoFn's thread pool (:class:`transforms.pooled.PooledDoFn`);
  larger ones and streamed scenes (whole-scene masks while prepared) here.
  """

  STEP = "prepare"

  def __init__(self, spec: PrepareSpec, threads: Optional[int] = None):
    super().__init__(threads)
    self._spec = spec

  def process(self, item, headers, window=WINDOW, timestamp=TIMESTAMP) -> Iterator:
    yield from self.pooled(self._prepare, (item, headers), window, timestamp, on_pool=small_tile(item))

  def _prepare(self, item, headers=()) -> Iterator:
    is_scene = scenes.is_scene(item)
    try:
      if is_scene:
        out = scene_context.prepare_scene(item, self._spec.footprint)
      else:
        out = prepare_tile(item, self._spec, headers or ())
      to_fill, known, far = _counts(out)
      if to_fill == 0 and not far:
        reason, outcome = "the mask covers only no-data pixels: nothing to restore", SKIPPED
      elif known == 0:
        reason, outcome = "no known pixel inside the footprint", FAILED
      else:
        if is_scene and self._spec.guide is not None:
          out = _scene_guide(out, self._spec.guide)
        counters.inc("prepared")
        yield out
        return
    except guide.GuideError as e:
      reason, outcome = str(e), FAILED
      stage = "guide"
    except (ValueError, MemoryError, OSError) as e:
      reason, outcome = f"{type(e).__name__}: {e}", FAILED
      stage = "prepare"
    else:
      stage = "validate"
    if is_scene:
      scenes.remove_local_copy(item)
    counters.inc("skipped_nodata_only" if outcome == SKIPPED else f"failed_{stage}")
    yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(item.pair.image_path, stage, reason, outcome))


@dataclasses.dataclass
class Headers(beam.PTransform):
  """Matched pairs -> a singleton: the georeferenced headers of every pair
  (:func:`transforms.neighbours.header`), so that a tile of a pre-cut grid
  draws its context from its neighbours too; ``[]`` without ``neighbours``.
  """

  neighbours: bool

  def expand(self, pairs):
    if not self.neighbours:
      return pairs.pipeline | "NoHeaders" >> beam.Create([[]])
    return (pairs | "Header" >> beam.Map(neighbours.header) | "Georeferenced" >> beam.Filter(bool) |
            "AllHeaders" >> beam.combiners.ToList())


@dataclasses.dataclass
class Prepare(beam.PTransform):
  """``(decoded tiles and scenes, Headers singleton)`` -> outputs ``tiles`` (prepared) and ``dead``."""

  spec: PrepareSpec

  def expand(self, inputs):
    decoded, headers = inputs
    # Always a side input: Beam fills process()'s window and timestamp parameters
    # only when every parameter before them is given (no defaulted side input).
    prepare = PrepareTiles(self.spec, pool_threads(decoded.pipeline))
    return decoded | "Prepare" >> beam.ParDo(prepare, beam.pvalue.AsSingleton(headers)).with_outputs(DEAD, main="tiles")

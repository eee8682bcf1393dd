"""Between decode and window: the footprint, the fill limit, and the guide.

:class:`PrepareTiles` takes each decoded :class:`Tile` (or streamed
:class:`transforms.scenes.SceneRef`) and returns a new one whose mask holds
only the pixels to fill (no-data and pixels beyond ``--max-fill-distance``
taken out, see :mod:`transforms.footprint`), with its guide attached
(:mod:`transforms.guide`). Refusals go to ``dead``:

* the mask covered only no-data: skipped (nothing to restore);
* no known pixel inside the footprint: failed ("no known pixel");
* a guide that does not overlap, or whose bands or dtype do not fit: failed.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Optional

import apache_beam as beam
import numpy as np

from transforms import counters, footprint, guide, scenes
from transforms.records import FAILED, SKIPPED, DeadLetter, Tile

DEAD = "dead"


@dataclasses.dataclass(frozen=True)
class PrepareSpec:
  """What preparing does.

  Attributes:
    footprint: The footprint and the fill limit.
    guide: Where guides are, or None for no guide.
  """

  footprint: footprint.FootprintSpec = footprint.FootprintSpec()
  guide: Optional[guide.GuideSpec] = None


def _attach_guide(tile: Tile, spec: guide.GuideSpec) -> Tile:
  """The tile with its aligned guide (or notes saying why it has none)."""
  ref = guide.resolve(tile.pair.image_path, spec)
  if ref is None:
    counters.inc("unguided_missing_guide")
    return dataclasses.replace(tile, notes=dict(tile.notes, guided=False, guide="missing"))
  h, w = tile.mask.shape
  values, valid = guide.read_whole(ref, guide.Grid.of(tile.profile, h, w), tile.image.shape[2],
                                   tile.profile["dtype"], spec)
  if not ((valid >= 1.0) & tile.mask).any():
    counters.inc("unguided_cloudy_guide")
    return dataclasses.replace(tile, notes=dict(tile.notes, guided=False, guide_path=ref.path,
                                                guide="cloudy or absent over every hole"))
  counters.inc("guided")
  return dataclasses.replace(tile, guide=values, guide_valid=valid,
                             notes=dict(tile.notes, guided=True, guide_path=ref.path))


def prepare_tile(tile: Tile, spec: PrepareSpec) -> Tile:
  fp = footprint.apply(tile.image, tile.mask, tile.profile.get("nodata"), spec.footprint)
  out = dataclasses.replace(tile, mask=fp.mask, nodata=fp.nodata, unfilled=fp.unfilled,
                            timings=dict(tile.timings), notes=dict(tile.notes))
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
  with guide.AlignedGuide(g, guide.Grid.of(ref.profile, h, w), len(ref.band_index),
                          ref.profile["dtype"], spec):
    pass
  counters.inc("guided")
  return dataclasses.replace(ref, guide=g, notes=dict(ref.notes, guided=True, guide_path=g.path))


def _counts(item) -> tuple[int, int, bool]:
  """(pixels to fill, known pixels, any unfilled)."""
  if isinstance(item, Tile):
    return int(item.mask.sum()), int(item.known().sum()), item.unfilled is not None
  return (int(np.unpackbits(item.packed_mask).sum()), int(item.known().sum()),
          item.packed_unfilled is not None)


class PrepareTiles(beam.DoFn):
  """Tile/SceneRef -> the same, prepared; refusals go to ``dead``."""

  def __init__(self, spec: PrepareSpec):
    self._spec = spec

  def process(self, item) -> Iterator:
    # pylint: disable=import-outside-toplevel
    from transforms import scene_context
    is_scene = isinstance(item, scenes.SceneRef)
    try:
      if is_scene:
        out = scene_context.prepare_scene(item, self._spec.footprint)
      else:
        out = prepare_tile(item, self._spec)
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

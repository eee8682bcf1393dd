"""The in-memory tile path: join each tile with its restored windows, composite, write.

Downstream of inference, tiles and streamed scenes part ways
(:func:`transforms.scenes.is_scene` decides); this is the tiles' way::

  (prepared tiles, restored windows) -> Join -> Composite -> Write -> results, dead

The scenes' way is :mod:`transforms.scene_path`.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import apache_beam as beam

from transforms.composite import CompositeTiles
from transforms.records import DEAD, Tile
from transforms.scenes import is_scene
from transforms.write import WriteSpec, WriteTiles


def is_tile(element) -> bool:
  """An in-memory tile (or a window result of one): not a scene's."""
  return not is_scene(element)


def keyed_for_composite(tile: Tile) -> tuple[str, Tile]:
  """``(key, tile)`` without the guide and context the composite does not need
  (a new record: the input is not modified)."""
  if tile.guide is not None or tile.context is not None:
    tile = dataclasses.replace(tile, guide=None, context=None)
  return tile.key, tile


@dataclasses.dataclass
class TilePath(beam.PTransform):
  """``(prepared tiles and scenes, restored (key, window result) pairs)`` ->
  ``{"results": TileResult, "dead": DeadLetter}`` for the in-memory tiles.

  Attributes:
    value_range: ``--value-range`` (LO, HI), or None for the dtype's range.
    write: How restored tiles are written and measured.
  """

  value_range: Optional[tuple[float, float]]
  write: WriteSpec

  def expand(self, inputs):
    prepared, restored = inputs
    tiles = prepared | "Tiles" >> beam.Filter(is_tile) | "KeyTiles" >> beam.Map(keyed_for_composite)
    windows = restored | "TileWindows" >> beam.Filter(lambda kv: is_tile(kv[1]))
    composited = ({
        "tile": tiles,
        "windows": windows
    } | "Join" >> beam.CoGroupByKey() |
                  "Composite" >> beam.ParDo(CompositeTiles(self.value_range)).with_outputs(DEAD, main="tiles"))
    written = composited.tiles | "Write" >> beam.ParDo(WriteTiles(self.write)).with_outputs(DEAD, main="results")
    return {"results": written.results, DEAD: (composited[DEAD], written[DEAD]) | "AllDead" >> beam.Flatten()}

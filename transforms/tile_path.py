"""The in-memory tile path: join each tile with its restored windows, composite, write.

Downstream of inference, tiles and streamed scenes part ways
(:func:`transforms.scenes.is_scene` decides); this is the tiles' way::

  (tiles to join, restored windows) -> Join ----------------+
                                                              +-> Composite -> Write -> results, dead
  tiles carried by their only window (Solo) -> AsJoined -----+

The scenes' way is :mod:`transforms.scene_path`.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import apache_beam as beam

from transforms.composite import CompositeTiles
from transforms.pooled import pool_threads
from transforms.records import DEAD, Solo
from transforms.scenes import is_scene
from transforms.write import WriteSpec, WriteTiles


def is_tile(element) -> bool:
  """An in-memory tile (or a window result of one): not a scene's."""
  return not is_scene(element)


def is_solo(keyed) -> bool:
  """``(key, Solo)``: a tile that travelled inside its only window."""
  return isinstance(keyed[1], Solo)


def as_joined(keyed: tuple[str, Solo]) -> tuple[str, dict]:
  """``(key, Solo)`` in the shape of the join's output: ``(key, {"tile": [tile], "windows": [result]})``."""
  key, solo = keyed
  return key, {"tile": [solo.tile], "windows": [solo.result]}


@dataclasses.dataclass
class TilePath(beam.PTransform):
  """``((key, Tile) to join, restored (key, window result) pairs)`` ->
  ``{"results": TileResult, "dead": DeadLetter}`` for the in-memory tiles.

  The tiles to join are those :class:`transforms.window.CutWindows` did not
  send inside their only window; those come as ``(key, Solo)`` among the
  restored windows and skip the join.

  Attributes:
    value_range: ``--value-range`` (LO, HI), or None for the dtype's range.
    write: How restored tiles are written and measured.
  """

  value_range: Optional[tuple[float, float]]
  write: WriteSpec

  def expand(self, inputs):
    tiles, restored = inputs
    windows = restored | "TileWindows" >> beam.Filter(lambda kv: is_tile(kv[1]))
    joined = {
        "tile": tiles,
        "windows": windows | "Joined" >> beam.Filter(lambda kv: not is_solo(kv))
    } | "Join" >> beam.CoGroupByKey()
    solo = windows | "Solo" >> beam.Filter(is_solo) | "AsJoined" >> beam.Map(as_joined)
    composited = ((joined, solo) | "AllTiles" >> beam.Flatten() | "Composite" >> beam.ParDo(
        CompositeTiles(self.value_range, pool_threads(tiles.pipeline))).with_outputs(DEAD, main="tiles"))
    written = composited.tiles | "Write" >> beam.ParDo(WriteTiles(self.write, pool_threads(
        tiles.pipeline))).with_outputs(DEAD, main="results")
    return {"results": written.results, DEAD: (composited[DEAD], written[DEAD]) | "AllDead" >> beam.Flatten()}

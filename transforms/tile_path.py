"""The in-memory tile path: join each tile with its restored windows, composite, write.

Downstream of inference, tiles and streamed scenes part ways
(:func:`transforms.scenes.is_scene` decides); this is the tiles' way::

  tiles carried by their only window (Solo) -> AsJoined -> CompositeSolo -> Write --+
  (tiles to join, restored and failed windows) -> Join -------+                       +-> results, dead
  tiles whose only window failed (Solo) -> AsJoined ----------+-> Composite -> Write --+

The first line is the common case (a pre-cut archive) and runs fused with
inference, a tile written as soon as its window is restored: the local
runners materialise every Flatten and shuffle, so one behind inference would
hold every restored tile until the last batch is done.

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
  """``((key, Tile) to join, restored (key, result), failed (key, failure))``
  -> ``{"results": TileResult, "dead": DeadLetter}`` for the in-memory tiles.

  The tiles to join are those :class:`transforms.window.CutWindows` did not
  send inside their only window; those come as ``(key, Solo)`` among the
  restored or failed windows and skip the join.

  Attributes:
    value_range: ``--value-range`` (LO, HI), or None for the dtype's range.
    write: How restored tiles are written and measured.
  """

  value_range: Optional[tuple[float, float]]
  write: WriteSpec

  def expand(self, inputs):
    tiles, restored, failed = inputs
    restored = restored | "TileWindows" >> beam.Filter(lambda kv: is_tile(kv[1]))
    failed = failed | "FailedTileWindows" >> beam.Filter(lambda kv: is_tile(kv[1]))
    to_join = ((restored | "Joined" >> beam.Filter(lambda kv: not is_solo(kv)),
                failed | "JoinedFailed" >> beam.Filter(lambda kv: not is_solo(kv))) | "AllToJoin" >> beam.Flatten())
    joined = {"tile": tiles, "windows": to_join} | "Join" >> beam.CoGroupByKey()
    solo_failed = failed | "SoloFailed" >> beam.Filter(is_solo) | "AsJoinedFailed" >> beam.Map(as_joined)
    solo = restored | "Solo" >> beam.Filter(is_solo) | "AsJoined" >> beam.Map(as_joined)
    fused = solo | "CompositeSolo" >> CompositeAndWrite(self.value_range, self.write)
    rest = (joined, solo_failed) | "AllJoined" >> beam.Flatten() | "Composite" >> CompositeAndWrite(
        self.value_range, self.write)
    return {
        "results": (fused["results"], rest["results"]) | "AllResults" >> beam.Flatten(),
        DEAD: (fused[DEAD], rest[DEAD]) | "AllDead" >> beam.Flatten()
    }


@dataclasses.dataclass
class CompositeAndWrite(beam.PTransform):
  """``(key, {"tile": [Tile], "windows": [results]})`` -> ``{"results": TileResult, "dead": DeadLetter}``
  (attributes as :class:`TilePath`'s)."""

  value_range: Optional[tuple[float, float]]
  write: WriteSpec

  def expand(self, joined):
    threads = pool_threads(joined.pipeline)
    composited = joined | "Composite" >> beam.ParDo(CompositeTiles(self.value_range, threads)).with_outputs(
        DEAD, main="tiles")
    written = composited.tiles | "Write" >> beam.ParDo(WriteTiles(self.write, threads)).with_outputs(DEAD,
                                                                                                     main="results")
    return {"results": written.results, DEAD: (composited[DEAD], written[DEAD]) | "AllDead" >> beam.Flatten()}

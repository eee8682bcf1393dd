"""The restoration graph: one named stage a line, top to bottom.

::

  Match -> Incremental -> Decode -> Prepare -> Window -> Infer
        -> TilePath  (in-memory tiles: join, or carried by their only window; composite, write)
        -> ScenePath (streamed scenes: join, assemble stripe by stripe)
        -> Outputs   (metrics, dead letters, summary, manifest)
  Match -> Headers (the neighbours' headers: a side input Decode waits for and Prepare reads)

Every stage reads its spec from one :class:`pipeline.config.RunConfig`;
each may send inputs it cannot handle to ``dead`` (:class:`DeadLetter`).
From Decode to TilePath's write, a tile of one window meets no Flatten and
no shuffle, so the local runners run those steps as one fused stage and a
tile is written while later ones are inferred (``tests/test_fusion.py``).
"""

from __future__ import annotations

import apache_beam as beam

from pipeline.config import RunConfig
from pipeline.outputs import WriteOutputs
from transforms.decode import Decode
from transforms.incremental import Incremental
from transforms.infer import FAILED, RESTORED, Infer
from transforms.match import MatchPairs
from transforms.prepare import Headers, Prepare
from transforms.records import DEAD
from transforms.scene_path import ScenePath
from transforms.tile_path import TilePath
from transforms.window import FAILED_WINDOWS, TILES, WindowTiles


def build(p: beam.Pipeline, config: RunConfig) -> None:
  """Adds the restoration graph of ``config`` to pipeline ``p``."""
  c, m = config, config.model
  matched = p | "Match" >> MatchPairs(c.images, c.masks, c.since, c.output_dir)
  todo = matched["pairs"] | "Incremental" >> Incremental(c.output_dir, m.version, c.overwrite, m.weights_sha256)
  headers = matched["pairs"] | "Headers" >> Headers(c.prepare.neighbours is not None)
  decoded = (todo.todo, headers) | "Decode" >> Decode(c.decode)
  prepared = (decoded.tiles, headers) | "Prepare" >> Prepare(c.prepare)
  cut = prepared.tiles | "Window" >> WindowTiles(c.window, c.output_dir, c.preview, c.prepare.guide)
  inferred = cut.windows | "Infer" >> Infer(c.infer)
  restored, failed = inferred[RESTORED], (inferred[FAILED], cut[FAILED_WINDOWS]) | "FailedWindows" >> beam.Flatten()
  tiles = (cut[TILES], restored, failed) | "TilePath" >> TilePath(c.value_range, c.write)
  scenes = (prepared.tiles, restored, failed) | "ScenePath" >> ScenePath(c.scene_write)
  results = (tiles["results"], scenes["results"]) | "AllResults" >> beam.Flatten()
  dead = ((matched[DEAD], decoded[DEAD], prepared[DEAD], tiles[DEAD], scenes[DEAD]) | "AllDead" >> beam.Flatten())
  _ = ({
      "results": results,
      "dead": dead,
      "up_to_date": todo.up_to_date,
      "matched": matched["pairs"]
  } | "Outputs" >> WriteOutputs(c.output_dir, c.run_id, m.as_dict()))

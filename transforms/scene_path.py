"""The streamed-scene path: join each scene with its spilled windows, assemble, write.

Downstream of inference, tiles and streamed scenes part ways
(:func:`transforms.scenes.is_scene` decides); this is the scenes' way::

  (scene refs, spilled windows) -> Join -> Assemble (stripe by stripe) -> results, dead

The tiles' way is :mod:`transforms.tile_path`; how a scene is streamed is
:mod:`transforms.scenes` and :mod:`transforms.scene_context`.
"""

from __future__ import annotations

import dataclasses

import apache_beam as beam

from transforms.records import DEAD
from transforms.scene_write import AssembleScenes, SceneWriteSpec
from transforms.scenes import SceneRef, is_scene


def keyed(ref: SceneRef) -> tuple[str, SceneRef]:
  return ref.key, ref


@dataclasses.dataclass
class ScenePath(beam.PTransform):
  """``(prepared tiles and scenes, restored (key, SpillRef), failed (key, WindowFailure))``
  -> ``{"results": TileResult, "dead": DeadLetter}`` for the streamed scenes.

  Attributes:
    write: How assembled scenes are written and measured.
  """

  write: SceneWriteSpec

  def expand(self, inputs):
    prepared, restored, failed = inputs
    scenes = prepared | "Scenes" >> beam.Filter(is_scene) | "KeyScenes" >> beam.Map(keyed)
    spills = ((restored | "SceneSpills" >> beam.Filter(lambda kv: is_scene(kv[1])), failed |
               "FailedSceneWindows" >> beam.Filter(lambda kv: is_scene(kv[1]))) | "AllSpills" >> beam.Flatten())
    assembled = ({
        "scene": scenes,
        "spills": spills
    } | "Join" >> beam.CoGroupByKey() |
                 "Assemble" >> beam.ParDo(AssembleScenes(self.write)).with_outputs(DEAD, main="results"))
    return {"results": assembled.results, DEAD: assembled[DEAD]}

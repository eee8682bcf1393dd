"""A tile carried by its only window is written in the stage that infers it.

The local runners (the DirectRunner's in_memory and multi_processing modes,
Beam's FnApiRunner) materialise every Flatten of two or more inputs and every
shuffle: whatever comes after one waits until everything before it is done.
Had the common path of a pre-cut archive (a tile that fits one window) a
Flatten between inference and the write, every restored tile would be held in
memory until the last batch was inferred, and nothing would be written while
the model runs (measured on 512 grid tiles: 4,273 MiB peak, against 2,878 MiB
with that Flatten gone; README, "Speed and memory"). These tests ask Beam's own fuser where the steps land.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import fn_runner
import pytest


class _Stages(beam.Pipeline):
  """A pipeline that, instead of running, raises how the FnApiRunner fuses it."""

  def run(self, test_runner_api="AUTO"):
    _, stages = fn_runner.FnApiRunner().create_stages(self.to_runner_api())
    raise _Built([{t.unique_name for t in s.transforms} for s in stages])


class _Built(Exception):
  """Carries the fused stages: the transform names of each."""

  def __init__(self, stages: list[set[str]]):
    super().__init__(f"{len(stages)} stages")
    self.stages = stages


def _stages(tmp_path, model: str, *extra: str) -> list[set[str]]:
  from pipeline.run import run  # pylint: disable=import-outside-toplevel
  argv = [
      "--images",
      str(tmp_path / "img" / "*.tif"), "--masks",
      str(tmp_path / "mask" / "{stem}.png"), "--output",
      str(tmp_path / "out"), "--model", model, *extra
  ]
  with pytest.raises(_Built) as built:
    run(argv, test_pipeline=_Stages(options=PipelineOptions([])))
  return built.value.stages


def _stage_of(stages: list[set[str]], step: str) -> int:
  """The one stage holding the transforms under ``step`` (a name prefix)."""
  (hit,) = {i for i, names in enumerate(stages) if any(n.startswith(step + "/") for n in names)}
  return hit


@pytest.mark.parametrize("backend", ["native", "tfx"])
def test_a_solo_tile_is_composited_and_written_where_it_is_inferred(tmp_path, mean_model, backend):
  stages = _stages(tmp_path, mean_model, "--backend", backend)
  inferred = _stage_of(stages, "Infer/RunInference/BeamML_RunInference")
  assert _stage_of(stages, "TilePath/CompositeSolo/Composite") == inferred
  assert _stage_of(stages, "TilePath/CompositeSolo/Write") == inferred
  # The windows' cut and the quicklook happen there too: one pass over a tile.
  assert _stage_of(stages, "Window/Cut") == inferred


def test_joined_tiles_and_failures_still_wait_for_their_join(tmp_path, mean_model):
  """The other path: a tile of several windows is joined with them (a shuffle)
  before it is composited, and failed windows reach it through a Flatten."""
  stages = _stages(tmp_path, mean_model)
  inferred = _stage_of(stages, "Infer/RunInference/BeamML_RunInference")
  assert _stage_of(stages, "TilePath/Composite/Composite") != inferred
  assert _stage_of(stages, "ScenePath/Assemble") != inferred

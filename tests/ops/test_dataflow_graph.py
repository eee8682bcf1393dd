"""The Dataflow launch builds and translates offline, GPU hint on RunInference.

``DataflowRunner`` with ``--dry_run=True`` does everything a launch does up
to the Dataflow API call: option validation, the Runner v2 graph, the
portable job proto, the container environments with their resource hints,
and the staging of ``--setup_file`` (an sdist of this package). The network
is disabled for these tests (:func:`no_network`): nothing may even try to
reach Google.
"""

from __future__ import annotations

import importlib.util
import json
import os

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability.api import beam_runner_api_pb2
import pytest

from tests.ops.opslib import ROOT

IMAGE = "us-central1-docker.pkg.dev/cloudfill-ops-test/cloudfill/cloudfill-gpu:0.1.0"
GPU = "type:nvidia-l4;count:1;install-nvidia-driver"
DATAFLOW = [
    "--runner=DataflowRunner", "--project=cloudfill-ops-test", "--region=us-central1",
    "--temp_location=gs://cloudfill-ops-test/tmp", f"--sdk_container_image={IMAGE}", "--experiments=use_runner_v2",
    "--dry_run=True"
]
ACCELERATOR_URN = "beam:resources:accelerator:v1"


def _ours(model: str) -> list[str]:
  return [
      "--images", "gs://cloudfill-ops-test/scenes/{date}/*.tif", "--masks",
      "gs://cloudfill-ops-test/masks/{date}/{stem}.png", "--output", "gs://cloudfill-ops-test/restored", "--date",
      "2026-11-25", "--model", model, "--config", "landsat8_l1", "--accelerator", GPU, "--large-model",
      "--model-copies", "1"
  ]


def _load_flex_main():
  path = os.path.join(ROOT, "deploy", "flex-template", "main.py")
  spec = importlib.util.spec_from_file_location("cloudfill_flex_main", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _run_inference(pipeline: beam.Pipeline):
  """The ``RunInference`` transform object of a built pipeline."""
  from apache_beam.ml.inference.base import RunInference  # pylint: disable=import-outside-toplevel
  found = []

  class Visitor(beam.pipeline.PipelineVisitor):

    def enter_composite_transform(self, node):
      if isinstance(node.transform, RunInference):
        found.append(node.transform)

  pipeline.visit(Visitor())
  assert len(found) == 1, found
  return found[0]


def test_dataflow_gpu_job_translates_offline_with_the_hint_on_run_inference(mean_model, no_network, monkeypatch):
  """The full GPU launch line, --setup_file included, becomes a Dataflow job proto."""
  from pipeline.run import run  # pylint: disable=import-outside-toplevel
  monkeypatch.chdir(ROOT)
  argv = _ours(mean_model) + DATAFLOW + ["--setup_file=./setup.py"]
  p = beam.Pipeline(options=PipelineOptions(DATAFLOW + ["--setup_file=./setup.py"]))
  result = run(argv, test_pipeline=p)
  assert no_network == []  # Nothing tried to leave the machine.

  job = result.job  # apiclient.Job: what would be sent to the Dataflow API.
  assert json.loads(job.json())["type"] == "JOB_TYPE_BATCH"
  assert job.options.view_as(beam.options.pipeline_options.DebugOptions).lookup_experiment("use_runner_v2")
  proto = job.proto_pipeline
  transforms = proto.components.transforms
  envs = proto.components.environments

  inference = [t for t in transforms.values() if t.unique_name.endswith("BeamML_RunInference")]
  assert len(inference) == 1
  hinted = envs[inference[0].environment_id]
  assert hinted.resource_hints[ACCELERATOR_URN] == GPU.encode()
  # Only the inference step asks for a GPU; decoding, writing … run beside it.
  for t in transforms.values():
    if t.environment_id and t.unique_name.startswith(
        ("Decode", "Prepare", "Window", "TilePath", "ScenePath", "Outputs", "Match")):
      assert ACCELERATOR_URN not in envs[t.environment_id].resource_hints, t.unique_name
  # Every environment is our container image, with the package staged.
  for env in envs.values():
    assert env.urn == "beam:env:docker:v1"
    assert beam_runner_api_pb2.DockerPayload.FromString(env.payload).container_image == IMAGE
  staged = set()
  for dep in hinted.dependencies:
    if dep.role_urn == "beam:artifact:role:staging_to:v1":
      staged.add(beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(dep.role_payload).staged_name)
  assert "workflow.tar.gz" in staged, staged  # The sdist built from setup.py.

  # One model per GPU: shared across the worker's processes, one copy.
  handler = _run_inference(p)._model_handler  # pylint: disable=protected-access
  assert handler.share_model_across_processes()
  assert handler.model_copies() == 1
  assert handler.get_resource_hints() == {"accelerator": GPU}


def test_tfx_backend_puts_the_hint_on_its_run_inference_too(mean_model, no_network):
  """``--backend tfx`` (tfx-bsl's handler) gets the same GPU hint, on the same step."""
  from pipeline.run import run  # pylint: disable=import-outside-toplevel
  proto = run(_ours(mean_model) + ["--backend", "tfx"] + DATAFLOW).job.proto_pipeline
  assert no_network == []
  envs, transforms = proto.components.environments, proto.components.transforms
  hinted = {
      t.unique_name
      for t in transforms.values()
      if t.environment_id and ACCELERATOR_URN in envs[t.environment_id].resource_hints
  }
  assert any(n.endswith("BeamML_RunInference") for n in hinted), hinted
  assert all(n.startswith("Infer/RunInference") for n in hinted), hinted


def test_flex_template_launch_path_exits_0_offline(mean_model, no_network, tmp_path):
  """Flex-style parameters (underscored, boolean strings) through the template's
  main.py and ``cloudfill run``: graph built, exit 0, nothing written."""
  flex = _load_flex_main()
  params = [
      "--images=gs://cloudfill-ops-test/scenes/{date}/*.tif", "--masks=gs://cloudfill-ops-test/masks/{date}/{stem}.png",
      "--output=gs://cloudfill-ops-test/restored", "--date=2026-11-25", f"--model={mean_model}", "--config=landsat8_l1",
      f"--accelerator={GPU}", "--large_model=true", "--model_copies=1", "--overwrite=false", "--since=",
      "--project=cloudfill-ops-test", "--region=us-central1", "--temp_location=gs://cloudfill-ops-test/tmp",
      f"--sdk_container_image={IMAGE}", "--experiments=use_runner_v2", "--dry_run=True", "--no-report"
  ]
  translated = flex.translate(params)
  assert "--large-model" in translated and "--model-copies=1" in translated
  assert not any(a.startswith(("--overwrite", "--since")) for a in translated)
  assert "--runner=DataflowRunner" in translated
  assert "--temp_location=gs://cloudfill-ops-test/tmp" in translated  # Beam's: unchanged.
  assert flex.main(params) == 0  # Submit only (here: build only), as a launcher should.
  assert flex.main(params + ["--wait=true"]) == 0  # Through cloudfill run's own exit path.
  assert no_network == []


def test_flex_translate_refuses_a_bad_boolean():
  flex = _load_flex_main()
  with pytest.raises(ValueError, match="--large-model takes true or false"):
    flex.translate(["--large_model=maybe"])
  with pytest.raises(ValueError, match="--wait takes true or false"):
    flex.split_wait(["--wait=later"])
  assert flex.split_wait(["--images=x", "--wait"]) == (True, ["--images=x"])
  assert flex.split_wait(["--wait=false", "--output=y"]) == (False, ["--output=y"])

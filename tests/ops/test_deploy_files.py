"""The deployment files agree with the code and with the launcher's versions.

No Docker engine runs here, so the image is checked by what can be checked
without building it: its pins equal what this launcher runs, every file it
copies exists, its entrypoint is Beam's boot; the scripts parse; every Flex
Template, Cloud Scheduler and Airflow parameter is an option that
``cloudfill run`` or Beam understands.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import json
import os
import py_compile
import re
import subprocess
import sys

import apache_beam
from apache_beam.options.pipeline_options import PipelineOptions
import pytest

from pipeline import options as cli_options
from tests.ops.opslib import ROOT

DEPLOY = os.path.join(ROOT, "deploy")
PARAM_TYPES = {
    "TEXT", "GCS_READ_FILE", "GCS_WRITE_FILE", "GCS_READ_FOLDER", "GCS_WRITE_FOLDER", "BOOLEAN", "ENUM", "NUMBER"
}


def _read(*parts: str) -> str:
  with open(os.path.join(DEPLOY, *parts), encoding="utf-8") as f:
    return f.read()


def _flex():
  spec = importlib.util.spec_from_file_location("cloudfill_flex_main", os.path.join(DEPLOY, "flex-template", "main.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _beam_option_names() -> set[str]:
  return set(PipelineOptions([]).get_all_options(retain_unknown_options=False))


def _parses_as_ours(params: dict[str, str]) -> tuple[object, list[str]]:
  """Flex-style ``{name: value}`` through the shim and cloudfill's parser."""
  flex = _flex()
  _, rest = flex.split_wait([f"--{k}={v}" for k, v in params.items()])
  return cli_options.parse(flex.translate(rest))


def test_requirement_pins_equal_the_launcher_versions():
  pins = {}
  for line in _read("requirements-gpu.txt").splitlines():
    line = line.split("#", 1)[0].strip()
    if line:
      name, version = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]+\])?==([^\s;]+)", line).groups()
      pins[name] = version
  assert pins["apache-beam"] == apache_beam.__version__
  assert "tensorflow" in pins and "tfx-bsl" in pins and "rasterio" in pins
  drift = {n: (v, importlib.metadata.version(n)) for n, v in pins.items() if importlib.metadata.version(n) != v}
  assert not drift, f"pinned vs installed: {drift}"
  assert "tensorflow[and-cuda]==" in _read("requirements-gpu.txt")


def test_dockerfile_matches_the_launcher_and_copies_what_exists():
  text = _read("Dockerfile")
  args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
  assert args["BEAM_VERSION"] == apache_beam.__version__
  assert args["PYTHON_VERSION"] == f"{sys.version_info.major}.{sys.version_info.minor}"
  assert "FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION} AS beam_sdk" in text
  assert "COPY --from=beam_sdk /opt/apache/beam /opt/apache/beam" in text
  assert re.search(r'^ENTRYPOINT \["/opt/apache/beam/boot"\]$', text, re.M)
  assert re.search(rf"^FROM python:{re.escape(args['PYTHON_VERSION'])}[.\d]*-slim", text, re.M)
  assert "ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/main.py" in text
  for line in text.splitlines():
    if line.startswith("COPY ") and "--from=" not in line:
      for src in line.split()[1:-1]:
        assert os.path.exists(os.path.join(ROOT, src)), f"Dockerfile copies missing {src}"


@pytest.mark.parametrize("script", ["check_image.sh", os.path.join("scheduler", "create_job.sh")])
def test_shell_scripts_parse_and_are_executable(script):
  path = os.path.join(DEPLOY, script)
  assert os.access(path, os.X_OK)
  subprocess.run(["bash", "-n", path], check=True)


def test_flex_template_metadata_parameters_are_cloudfill_flags():
  meta = json.loads(_read("flex-template", "metadata.json"))
  params = {p["name"]: p for p in meta["parameters"]}
  assert {n for n, p in params.items() if not p.get("isOptional")} == {"images", "output"}
  ours = _flex()._flags()[0]  # pylint: disable=protected-access
  values = {"BOOLEAN": "true", "NUMBER": "2"}
  sample = {}
  for name, p in params.items():
    assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
    assert p["paramType"] in PARAM_TYPES and p["label"] and p["helpText"], name
    assert name in ours or name == "wait", f"{name} is not a cloudfill run flag"
    if p["paramType"] == "ENUM":
      sample[name] = p["enumOptions"][0]["value"]
    elif name in ("images", "masks", "output", "model"):
      sample[name] = f"gs://b/{name}/{{stem}}"
    else:
      sample[name] = {
          "date": "2026-11-25",
          "since": "2026-11-24T00:00:00Z",
          "mask_source": "file",
          "accelerator": "type:nvidia-l4;count:1;install-nvidia-driver"
      }.get(name, values.get(p["paramType"], "x"))
    for regex in p.get("regexes", []):
      assert re.fullmatch(regex, sample[name]), (name, regex, sample[name])
  args, beam_args = _parses_as_ours(sample)
  assert beam_args == ["--runner=DataflowRunner"]  # Every parameter was one of ours.
  assert args.large_model is True and args.model_copies == 2 and args.overwrite is True
  backend = next(a for a in cli_options.build_parser()._actions if "--backend" in a.option_strings)  # pylint: disable=protected-access
  assert [o["value"] for o in params["backend"]["enumOptions"]] == list(backend.choices)
  for option in params["config"]["enumOptions"]:
    assert cli_options.load_config(option["value"]) is not None


def test_scheduler_body_launches_the_template_with_known_parameters():
  body = json.loads(_read("scheduler", "launch-body.json"))["launchParameter"]
  names = {p["name"] for p in json.loads(_read("flex-template", "metadata.json"))["parameters"]}
  assert set(body["parameters"]) <= names
  assert body["containerSpecGcsPath"].startswith("gs://")
  assert body["environment"]["additionalExperiments"] == ["use_runner_v2"]
  args, _ = _parses_as_ours(body["parameters"])
  assert args.accelerator.startswith("type:nvidia-l4") and args.large_model and args.model_copies == 1


def test_airflow_dag_compiles_and_passes_only_known_options(tmp_path):
  path = os.path.join(DEPLOY, "airflow", "cloudfill_nightly.py")
  py_compile.compile(path, cfile=str(tmp_path / "dag.pyc"), doraise=True)
  tree = ast.parse(_read("airflow", "cloudfill_nightly.py"))
  calls = [
      n for n in ast.walk(tree)
      if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "BeamRunPythonPipelineOperator"
  ]
  assert len(calls) == 1
  kwargs = {k.arg: k.value for k in calls[0].keywords}
  assert ast.literal_eval(kwargs["runner"]) == "DataflowRunner"
  keys = [ast.literal_eval(k) for k in kwargs["pipeline_options"].keys]
  ours, beam = set(_flex()._flags()[0]), _beam_option_names()  # pylint: disable=protected-access
  unknown = [k for k in keys if k not in ours and k not in beam and k != "wait"]
  assert not unknown, f"neither cloudfill nor Beam options: {unknown}"
  assert {"images", "masks", "date", "output", "accelerator"} <= set(keys)
  # The task waits for the job, so cloudfill's exit status (3: dead letters) reaches Airflow.
  wait = kwargs["pipeline_options"].values[keys.index("wait")]
  assert ast.literal_eval(wait) is True

"""The nightly job: re-runs write nothing new; changed inputs and new models redo.

One output folder, runs in sequence as a scheduler would start them::

  1st run                -> every tile restored
  same night, again      -> every tile skipped, no file under restored/ touched
  one input touched      -> that tile alone redone
  another model version  -> every tile redone, tagged with the new version
  --since                -> only inputs modified since then are even matched
"""

from __future__ import annotations

import os
import time

import pytest

from tests.helpers import read_raster
from tests.model_fixture import make_mean_fill_model
from tests.ops.opslib import cloudfill, copy_sample, read_json, tree
from transforms.incremental import TAG_MODEL_VERSION, TAG_SOURCE_MTIME

DATE = "2026-11-25"


def _mtimes(folder: str) -> dict[str, int]:
  return {name: os.stat(os.path.join(folder, name)).st_mtime_ns for name in os.listdir(folder)}


@pytest.fixture(scope="module")
def night(tmp_path_factory, mean_model):
  """Four tiles under scenes/{DATE}/, restored once; yields a runner for more nights."""
  root = tmp_path_factory.mktemp("nightly")
  copy_sample(str(root / "scenes" / DATE), n=4)
  out = str(root / "out")

  def run(*extra: str, model: str = mean_model) -> dict:
    status = cloudfill("--images", str(root / "scenes" / "{date}" / "images" / "*.tif"),
                       "--masks", str(root / "scenes" / "{date}" / "masks" / "{stem}.png"),
                       "--date", DATE, "--output", out, "--model", model,
                       "--config", "landsat8_l1", *extra)
    summary = read_json(os.path.join(out, "summary.json"))
    summary["status"] = status
    return summary

  first = run()
  return {"root": root, "out": out, "run": run, "first": first}


def test_first_night_restores_everything(night):
  s = night["first"]
  assert s["status"] == 0
  assert s["matched"] == 4 and s["counts"] == {"restored": 4, "skipped": 0, "failed": 0}
  restored = os.path.join(night["out"], "restored")
  assert len(os.listdir(restored)) == 4
  for name in os.listdir(restored):
    _, profile = read_raster(os.path.join(restored, name))
    assert profile["tags"][TAG_MODEL_VERSION] == "test-mean-1"


def test_second_run_same_night_writes_nothing_new(night):
  out = night["out"]
  restored = os.path.join(out, "restored")
  before_mtimes = _mtimes(restored)
  before_tree = [p for p in tree(out) if p not in ("summary.json", "manifest.json")]
  time.sleep(0.05)  # Any rewrite would show in the nanosecond mtimes.

  s = night["run"]()

  assert s["status"] == 0
  assert s["counts"] == {"restored": 0, "skipped": 4, "failed": 0} and s["counts_add_up"]
  assert _mtimes(restored) == before_mtimes  # Not one tile rewritten.
  after_tree = [p for p in tree(out) if p not in ("summary.json", "manifest.json")]
  assert after_tree == before_tree  # No new metrics/dead-letter file, no temp file.
  manifest = read_json(os.path.join(out, "manifest.json"))
  assert len(manifest["skipped"]) == 4
  assert {r["reason"] for r in manifest["skipped"]} == {"output up to date"}


def test_a_touched_input_is_redone_alone(night):
  out = night["out"]
  restored = os.path.join(out, "restored")
  images = night["root"] / "scenes" / DATE / "images"
  touched = sorted(os.listdir(images))[1]
  later = time.time() + 60
  os.utime(images / touched, (later, later))
  before = _mtimes(restored)

  s = night["run"]()

  assert s["counts"] == {"restored": 1, "skipped": 3, "failed": 0}
  after = _mtimes(restored)
  assert [n for n in after if after[n] != before[n]] == [touched]
  _, profile = read_raster(os.path.join(restored, touched))
  assert float(profile["tags"][TAG_SOURCE_MTIME]) == pytest.approx(later, abs=1e-3)
  manifest = read_json(os.path.join(out, "manifest.json"))
  assert [os.path.basename(r["path"]) for r in manifest["restored"]] == [touched]


def test_a_new_model_version_redoes_every_tile(night, tmp_path):
  model2 = make_mean_fill_model(str(tmp_path / "mean2"), window=64, overlap=8, version="test-mean-2")
  restored = os.path.join(night["out"], "restored")
  before = _mtimes(restored)

  s = night["run"](model=model2)

  assert s["counts"] == {"restored": 4, "skipped": 0, "failed": 0}
  assert s["model"]["version"] == "test-mean-2"
  after = _mtimes(restored)
  assert sorted(after) == sorted(before) and all(after[n] != before[n] for n in after)
  for name in after:
    _, profile = read_raster(os.path.join(restored, name))
    assert profile["tags"][TAG_MODEL_VERSION] == "test-mean-2"


def test_since_matches_only_recent_inputs(night):
  images = night["root"] / "scenes" / DATE / "images"
  names = sorted(os.listdir(images))
  old = time.time() - 3 * 86400
  for name in names[:3]:
    os.utime(images / name, (old, old))
  newest = time.time() + 120
  os.utime(images / names[3], (newest, newest))
  since = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - 86400))

  s = night["run"]("--since", since)

  # Only the one input modified in the last day is matched, and it is redone
  # (its mtime moved past the one recorded in its output).
  assert s["matched"] == 1
  assert s["counts"] == {"restored": 1, "skipped": 0, "failed": 0}

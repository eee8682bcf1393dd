"""The nightly job: re-runs write nothing new; changed inputs and new models redo.

One output folder, runs in sequence as a scheduler would start them::

  1st night              -> every tile restored
  same night, again      -> every tile skipped, no file under the output touched
  one input touched,
  another output cut     -> those two tiles alone redone
  another model version  -> every tile redone, tagged with the new version
  --since                -> only inputs modified since then are even matched

The module fixture runs the nights in order and records what each left; the
tests check one night each (so they also hold under pytest-xdist).
"""

from __future__ import annotations

import os
import time

import pytest

from tests.helpers import read_raster
from tests.model_fixture import make_mean_fill_model
from tests.ops.opslib import cloudfill, copy_sample, read_json, tree
from transforms.incremental import TAG_MODEL_VERSION, TAG_SOURCE_MTIME

pytestmark = pytest.mark.slow  # several nightly runs

DATE = "2026-11-25"
RUN_FILES = ("summary.json", "manifest.json")


def _mtimes(folder: str) -> dict[str, int]:
  return {name: os.stat(os.path.join(folder, name)).st_mtime_ns for name in os.listdir(folder)}


def _tags(folder: str) -> dict[str, dict[str, str]]:
  return {name: read_raster(os.path.join(folder, name))[1]["tags"] for name in os.listdir(folder)}


@pytest.fixture(scope="module")
def nights(tmp_path_factory, mean_model):
  """Runs the five nights over four tiles under scenes/{DATE}/; returns what each left."""
  root = tmp_path_factory.mktemp("nightly")
  copy_sample(str(root / "scenes" / DATE), n=4, small=True)
  images = root / "scenes" / DATE / "images"
  out = str(root / "out")
  restored = os.path.join(out, "restored")

  def night(*extra: str, model: str = mean_model) -> dict:
    before = {
        "mtimes": _mtimes(restored) if os.path.isdir(restored) else {},
        "tree": [p for p in tree(out) if p not in RUN_FILES] if os.path.isdir(out) else []
    }
    time.sleep(0.05)  # Any rewrite would show in the nanosecond mtimes.
    status = cloudfill("--images", str(root / "scenes" / "{date}" / "images" / "*.tif"), "--masks",
                       str(root / "scenes" / "{date}" / "masks" / "{stem}.png"), "--date", DATE, "--output", out,
                       "--model", model, "--config", "landsat8_l1", *extra)
    return {
        "status": status,
        "summary": read_json(os.path.join(out, "summary.json")),
        "manifest": read_json(os.path.join(out, "manifest.json")),
        "before": before,
        "mtimes": _mtimes(restored),
        "tags": _tags(restored),
        "tree": [p for p in tree(out) if p not in RUN_FILES]
    }

  result = {"first": night()}
  result["again"] = night()

  # One input touched, and one other output cut short behind cloudfill's back.
  touched, broken = sorted(os.listdir(images))[1], sorted(os.listdir(restored))[2]
  later = time.time() + 60
  os.utime(images / touched, (later, later))
  with open(os.path.join(restored, broken), "rb") as f:
    data = f.read()
  with open(os.path.join(restored, broken), "wb") as f:
    f.write(data[:len(data) // 3])
  result["changed"] = dict(night(), touched=touched, mtime=later, broken=broken)

  model2 = make_mean_fill_model(str(root / "mean2"), window=64, overlap=8, version="test-mean-2")
  result["new_model"] = night(model=model2)

  names = sorted(os.listdir(images))
  old = time.time() - 3 * 86400
  for name in names[:3]:
    os.utime(images / name, (old, old))
  newest = time.time() + 120
  os.utime(images / names[3], (newest, newest))
  since = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - 86400))
  result["since"] = dict(night("--since", since, model=model2), name=names[3])
  return result


def test_first_night_restores_everything(nights):
  n = nights["first"]
  assert n["status"] == 0
  assert n["summary"]["matched"] == 4
  assert n["summary"]["counts"] == {"restored": 4, "skipped": 0, "failed": 0}
  assert len(n["mtimes"]) == 4
  assert {t[TAG_MODEL_VERSION] for t in n["tags"].values()} == {"test-mean-1"}


def test_second_run_same_night_writes_nothing_new(nights):
  n = nights["again"]
  assert n["status"] == 0
  assert n["summary"]["counts"] == {"restored": 0, "skipped": 4, "failed": 0}
  assert n["summary"]["counts_add_up"]
  assert n["mtimes"] == n["before"]["mtimes"]  # Not one tile rewritten.
  assert n["tree"] == n["before"]["tree"]  # No new metrics/dead-letter file, no temp file.
  assert len(n["manifest"]["skipped"]) == 4
  assert {r["reason"] for r in n["manifest"]["skipped"]} == {"output up to date"}


def test_a_touched_input_and_a_truncated_output_are_redone_alone(nights):
  n = nights["changed"]
  assert n["touched"] != n["broken"]
  assert n["summary"]["counts"] == {"restored": 2, "skipped": 2, "failed": 0}
  assert sorted(os.path.basename(r["path"]) for r in n["manifest"]["restored"]) == sorted([n["touched"], n["broken"]])
  # The touched input's tile was rewritten; the others kept (the broken one was
  # rewritten by the test itself, so only its content says it was redone).
  changed = [k for k in n["mtimes"] if n["mtimes"][k] != n["before"]["mtimes"][k]]
  assert n["touched"] in changed and set(changed) <= {n["touched"], n["broken"]}
  assert float(n["tags"][n["touched"]][TAG_SOURCE_MTIME]) == pytest.approx(n["mtime"], abs=1e-3)
  assert n["tags"][n["broken"]][TAG_MODEL_VERSION] == "test-mean-1"  # Readable again.


def test_a_new_model_version_redoes_every_tile(nights):
  n = nights["new_model"]
  assert n["summary"]["counts"] == {"restored": 4, "skipped": 0, "failed": 0}
  assert n["summary"]["model"]["version"] == "test-mean-2"
  before, after = n["before"]["mtimes"], n["mtimes"]
  assert sorted(after) == sorted(before) and all(after[k] != before[k] for k in after)
  assert {t[TAG_MODEL_VERSION] for t in n["tags"].values()} == {"test-mean-2"}


def test_since_matches_only_recent_inputs(nights):
  n = nights["since"]
  # Only the one input modified in the last day is matched, and it is redone
  # (its mtime moved past the one recorded in its output).
  assert n["summary"]["matched"] == 1
  assert n["summary"]["counts"] == {"restored": 1, "skipped": 0, "failed": 0}
  assert [os.path.basename(r["path"]) for r in n["manifest"]["restored"]] == [n["name"]]

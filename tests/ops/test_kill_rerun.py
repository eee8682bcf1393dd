"""A run SIGKILLed mid-way, then re-run: every tile restored exactly once.

``cloudfill run`` over 18 tiles starts as a subprocess and is killed with
SIGKILL as soon as its first tile appears under ``restored/`` (no chance to
clean up: Beam's temporary folders of the metrics and dead-letter sinks are
still there, and a tile may be half-written under its temporary name). The
re-run must restore the rest, leave the tiles the killed run finished
untouched, and leave nothing partial or temporary anywhere under the output.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from pipeline.summary import remove_stale_temporaries
from tests.ops.opslib import ROOT, cloudfill, copy_sample, read_json, tree
from transforms.incremental import TAG_MODEL_VERSION
from transforms.raster_io import decode_raster, read_tags

pytestmark = pytest.mark.slow  # a run killed and re-run

N = 18


def _tifs(folder: str) -> list[str]:
  return sorted(f for f in os.listdir(folder) if f.endswith(".tif") and not f.startswith(".")) \
      if os.path.isdir(folder) else []


@pytest.fixture(scope="module")
def killed(tmp_path_factory, mean_model):
  root = tmp_path_factory.mktemp("kill")
  images, masks = copy_sample(str(root / "in"), n=6, copies=3, small=True)
  out = str(root / "out")
  argv = [
      "--images", images, "--masks", masks, "--output", out, "--model", mean_model, "--config", "landsat8_l1",
      "--no-report"
  ]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
  proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", *argv],
                          cwd=ROOT,
                          env=env,
                          stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  restored = os.path.join(out, "restored")
  deadline = time.time() + 180
  try:
    while not _tifs(restored):
      assert proc.poll() is None, f"cloudfill run ended ({proc.returncode}) before any tile was written"
      assert time.time() < deadline, "no tile written within 180 s"
      time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
  finally:
    if proc.poll() is None:
      proc.kill()
    proc.wait(30)
  left = tree(out)
  first = {name: os.stat(os.path.join(restored, name)).st_mtime_ns for name in _tifs(restored)}
  print(f"\nkilled with {len(first)} of {N} tiles written; left behind: {left}")
  status = cloudfill(*argv[:-1])
  return {"out": out, "returncode": proc.returncode, "left": left, "first": first, "status": status}


def test_the_run_was_killed_mid_way(killed):
  assert killed["returncode"] == -signal.SIGKILL
  assert 1 <= len(killed["first"]) < N
  assert "summary.json" not in killed["left"]  # It never finished.


def test_rerun_restores_every_tile_exactly_once(killed):
  out = killed["out"]
  assert killed["status"] == 0
  restored = os.path.join(out, "restored")
  assert len(_tifs(restored)) == N
  # Tiles the killed run completed are not redone (same file, same mtime).
  for name, mtime in killed["first"].items():
    assert os.stat(os.path.join(restored, name)).st_mtime_ns == mtime
  summary = read_json(os.path.join(out, "summary.json"))
  k = len(killed["first"])
  assert summary["matched"] == N and summary["counts_add_up"]
  assert summary["counts"] == {"restored": N - k, "skipped": k, "failed": 0}
  manifest = read_json(os.path.join(out, "manifest.json"))
  redone = {os.path.basename(r["path"]) for r in manifest["restored"]}
  skipped = {os.path.basename(r["path"]) for r in manifest["skipped"]}
  assert not redone & skipped and len(redone | skipped) == N
  assert skipped == set(killed["first"])


def test_nothing_partial_or_temporary_is_left(killed):
  out = killed["out"]
  restored = os.path.join(out, "restored")
  for path in tree(out):
    name = os.path.basename(path)
    assert not name.startswith(".") and not name.endswith(".tmp"), path
    assert "beam-temp" not in path, path
  assert sorted(os.listdir(restored)) == _tifs(restored)  # Only finished tiles.
  for name in _tifs(restored):
    with open(os.path.join(restored, name), "rb") as f:
      data = f.read()
    image, _ = decode_raster(data, ".tif")  # Complete and readable.
    assert image.shape == (256, 256, 3)
    assert read_tags(data, ".tif")[TAG_MODEL_VERSION] == "test-mean-1"
  # The re-run's metrics name each tile it restored once.
  rows = []
  for name in os.listdir(os.path.join(out, "metrics")):
    with open(os.path.join(out, "metrics", name), encoding="utf-8") as f:
      rows += [line for line in f if line.strip()]
  assert len(rows) == N - len(killed["first"])


def test_stale_temporaries_go_and_the_current_runs_stay(tmp_path):
  """What :func:`remove_stale_temporaries` removes from a local output folder."""
  keep = "20261126T023000Z-bbbbbb"
  files = {
      "restored/a.tif": False,
      "restored/.a.tif.0f1e2d.tmp": True,
      ".summary.json.3c4b.tmp": True,
      "metrics/metrics-20261125T023000Z-aaaaaa-00000-of-00001.jsonl": False,
      "metrics/beam-temp-metrics-20261125T023000Z-aaaaaa-99/x": True,
      f"metrics/beam-temp-metrics-{keep}-77/x": False,
      "failed/beam-temp-dead-letters-20261125T023000Z-aaaaaa-98/x": True,
      ".work/scene_1/0_0.npz": True,
      "summary.json": False,
  }
  for rel in files:
    path = tmp_path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
  remove_stale_temporaries(str(tmp_path), keep=keep)
  for rel, stale in files.items():
    assert (tmp_path / rel).exists() != stale, rel
  assert not (tmp_path / ".work").exists()

"""Issue 9: one run at a time per output folder, outputs never taken as inputs,
and bad flag values refused before any work (exit 2, one line)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from pipeline import cli, runlock
from tests.helpers import cloud_mask, read_jsonl, read_summary, write_geotiff, write_png
from tests.test_hostile_inputs import cloudfill_subprocess


def test_a_second_lock_is_refused_until_released(tmp_path):
  out = str(tmp_path / "out")
  lock = runlock.acquire(out, "run-1")
  with pytest.raises(runlock.LockHeld, match="another run \\(run-1"):
    runlock.acquire(out, "run-2")
  runlock.RunLock(lock.path, "run-2").release()  # Not run-2's: left alone.
  assert os.path.exists(lock.path)
  lock.release()
  assert not os.path.exists(lock.path)
  runlock.acquire(out, "run-2").release()


def test_a_dead_or_expired_holder_is_taken_over(tmp_path):
  out = str(tmp_path / "out")
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True,
                        text=True,
                        check=True)
  pid = int(dead.stdout)  # That process has exited.
  os.makedirs(out)
  path = runlock.lock_path(out)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(
        {
            "run_id": "killed",
            "host": os.uname().nodename,
            "pid": pid,
            "started": time.time(),
            "expires": time.time() + 3600
        }, f)
  lock = runlock.acquire(out, "next")
  assert json.load(open(path, encoding="utf-8"))["run_id"] == "next"
  lock.release()
  with open(path, "w", encoding="utf-8") as f:  # Another host's lock, expired.
    json.dump({"run_id": "old", "host": "elsewhere", "pid": 1, "started": 0, "expires": 1}, f)
  runlock.acquire(out, "later").release()


@pytest.fixture()
def small_inputs(tmp_path):
  rng = np.random.default_rng(2)
  for k in range(4):
    a = rng.integers(1000, 9000, (72, 72, 3)).astype(np.uint16)
    write_geotiff(str(tmp_path / "in" / f"t{k}.tif"), a)
    write_png(str(tmp_path / "masks" / f"t{k}.png"), cloud_mask(72, 72, seed=k).astype(np.uint8) * 255)
  return tmp_path


def test_a_live_lock_refuses_the_run_with_exit_2_in_one_line(small_inputs, mean_model, capsys):
  d = small_inputs
  out = d / "out"
  lock = runlock.acquire(str(out), "someone-else")  # This (live) process holds it.
  try:
    status = cli.main([
        "run", "--images",
        str(d / "in" / "*.tif"), "--masks",
        str(d / "masks" / "{stem}.png"), "--output",
        str(out), "--model", mean_model, "--no-report"
    ])
  finally:
    lock.release()
  err = capsys.readouterr().err.strip().splitlines()
  assert status == 2
  assert len(err) == 1 and "another run (someone-else" in err[0], err
  assert sorted(os.listdir(out)) == [], "a refused run wrote something"


@pytest.mark.slow
def test_two_concurrent_runs_never_destroy_each_other(small_inputs, mean_model):
  d = small_inputs
  out = d / "out"
  args = [
      "--images",
      str(d / "in" / "*.tif"), "--masks",
      str(d / "masks" / "{stem}.png"), "--output",
      str(out), "--model", mean_model
  ]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  cmd = [sys.executable, "-m", "pipeline.cli", "run", *args, "--no-report"]
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  procs = [
      subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for _ in range(2)
  ]
  results = [(p.wait(timeout=420), p.stderr.read()) for p in procs]
  codes = sorted(code for code, _ in results)
  assert codes in ([0, 0], [0, 2]), results
  for code, err in results:
    if code == 2:
      ours = [line for line in err.splitlines() if line.startswith("cloudfill run:")]
      assert len(ours) == 1 and "another run" in ours[0] and "Traceback" not in err, err
  summary = read_summary(str(out))
  assert summary["counts_add_up"] and summary["counts"]["failed"] == 0
  assert sorted(os.listdir(out / "restored")) == [f"t{k}.tif" for k in range(4)]
  leftovers = [n for n in os.listdir(out) if n.startswith(".")]
  assert leftovers == [], leftovers


@pytest.mark.slow
def test_outputs_inside_the_input_tree_are_never_inputs(tmp_path, mean_model):
  rng = np.random.default_rng(4)
  a = rng.integers(1000, 9000, (72, 72, 3)).astype(np.uint16)
  write_geotiff(str(tmp_path / "data" / "in" / "z.tif"), a)
  write_png(str(tmp_path / "masks" / "z.png"), cloud_mask(72, 72, seed=3).astype(np.uint8) * 255)
  args = [
      "--images",
      str(tmp_path / "data" / "**.tif"), "--masks",
      str(tmp_path / "masks" / "{stem}.png"), "--output",
      str(tmp_path / "data" / "out"), "--model", mean_model
  ]
  for expected in ({"restored": 1, "skipped": 0, "failed": 0}, {"restored": 0, "skipped": 1, "failed": 0}):
    proc = cloudfill_subprocess(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = read_summary(str(tmp_path / "data" / "out"))
    assert summary["matched"] == 1 and summary["counts"] == expected, summary
  assert read_jsonl(str(tmp_path / "data" / "out" / "failed")) == []


BAD_FLAGS = [
    (["--value-range", "nan,nan"], "--value-range: expected finite LO < HI"),
    (["--value-range", "0,inf"], "--value-range: expected finite LO < HI"),
    (["--value-range", "5,1"], "--value-range: expected finite LO < HI"),
    (["--mask-threshold", "nan"], "--mask-threshold: expected a finite number"),
    (["--bands", "0,1,2"], "bands are 1-based"),
    (["--mask-source", "band:x"], "band:K needs a 1-based band number"),
    (["--max-pixels", "0"], "--max-pixels must be a positive number"),
    (["--masks", "{0}.png"], "unknown placeholder {0}"),
    (["--masks", "{name}.png"], "unknown placeholder {name}"),
    (["--masks", "{stem.__class__}.png"], "unknown placeholder {stem.__class__}"),
    (["--output", "out[1]"], "holds the glob character"),
]


@pytest.mark.parametrize("flags,phrase", BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_bad_flag_values_exit_2_in_one_line_before_any_work(small_inputs, mean_model, capsys, flags, phrase):
  d = small_inputs
  base = {
      "--images": str(d / "in" / "*.tif"),
      "--masks": str(d / "masks" / "{stem}.png"),
      "--output": str(d / "out"),
      "--model": mean_model
  }
  for k in flags[0::2]:
    base.pop(k, None)
  if flags[0] == "--output":
    flags = ["--output", str(d / flags[1])]
  argv = ["run"] + [x for kv in base.items() for x in kv] + list(flags) + ["--no-report"]
  status = cli.main(argv)
  err = capsys.readouterr().err.strip().splitlines()
  assert status == 2
  assert len(err) == 1 and phrase in err[0], err
  assert not (d / "out").exists() and not (d / "out[1]").exists(), "a refused run wrote something"


@pytest.mark.slow
def test_object_storage_locks_are_exclusive():
  """gs:// (ifGenerationMatch=0) and s3:// (If-None-Match: *) against real protocol servers."""
  from apache_beam.io.filesystems import FileSystems
  from apache_beam.options.pipeline_options import PipelineOptions

  from tests.servers import gcs_emulator, s3_server
  with gcs_emulator("cf-lock"):
    lock = runlock.acquire("gs://cf-lock/out", "gcs-1")
    with pytest.raises(runlock.LockHeld, match="another run \\(gcs-1"):
      runlock.acquire("gs://cf-lock/out", "gcs-2")
    lock.release()
    assert not FileSystems.exists(lock.path)
    runlock.acquire("gs://cf-lock/out", "gcs-2").release()
  with s3_server("cf-lock") as s3:
    options = PipelineOptions(s3["beam_args"])
    FileSystems.set_options(options)
    lock = runlock.acquire("s3://cf-lock/out", "s3-1", options)
    with pytest.raises(runlock.LockHeld, match="another run \\(s3-1"):
      runlock.acquire("s3://cf-lock/out", "s3-2", options)
    # The create itself is conditional (moto honours If-None-Match; the GCS
    # emulator ignores ifGenerationMatch, so only the look-first check is tested there).
    assert not runlock._create_exclusive(lock.path, b"{}", options)  # pylint: disable=protected-access
    lock.release()
    runlock.acquire("s3://cf-lock/out", "s3-2", options).release()


def test_a_lock_that_cannot_be_created_is_a_usage_error(tmp_path):
  (tmp_path / "ro").mkdir()
  (tmp_path / "ro" / "out").write_text("a file where the output folder should be")
  with pytest.raises(runlock.LockHeld, match="cannot create the run lock"):
    runlock.acquire(str(tmp_path / "ro" / "out"), "r")

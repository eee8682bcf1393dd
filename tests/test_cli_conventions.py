"""The command line's conventions (issue 12.6, issue 9.8): usage errors are one
line and exit 2, fast, before any work; --version, -q, --dry-run, a progress
line, start-up noise filtered, the top failure reasons at the end."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from pipeline import cli, dryrun, progress
from tests.conftest import ROOT, SAMPLE

IMAGES = os.path.join(SAMPLE, "images", "*.tif")
MASKS = os.path.join(SAMPLE, "masks", "{stem}.png")


def _usage(capsys, *argv) -> str:
  """Runs ``cloudfill run ARGV``; asserts exit 2 and one stderr line without a traceback."""
  start = time.time()
  rc = cli.main(["run", *argv])
  err = capsys.readouterr().err.strip()
  assert rc == 2, err
  assert "Traceback" not in err and len(err.splitlines()) == 1, err
  assert time.time() - start < 20
  return err


def test_unknown_flag_is_refused_with_a_suggestion(capsys, tmp_path):
  err = _usage(capsys, "--images", IMAGES, "--masks", MASKS, "--output", str(tmp_path / "o"), "--dialte", "2")
  assert "unknown option --dialte" in err and "did you mean --dilate?" in err
  err = _usage(capsys, "--images", IMAGES, "--output", str(tmp_path / "o"), "--runer", "DirectRunner")
  assert "did you mean --runner?" in err
  err = _usage(capsys, "--images", IMAGES, "--output", str(tmp_path / "o"), "--max_batch_size", "4")
  assert "did you mean --max-batch-size?" in err
  assert not (tmp_path / "o").exists()


def test_real_beam_options_pass_and_bad_beam_values_are_usage_errors(capsys, tmp_path):
  from pipeline import options
  args, beam = options.parse([
      "--images", IMAGES, "--output", "o", "--runner", "DirectRunner", "--direct_num_workers", "2", "--experiments=a",
      "--experiments", "b"
  ])
  assert beam == ["--runner", "DirectRunner", "--direct_num_workers", "2", "--experiments=a", "--experiments", "b"]
  err = _usage(capsys, "--images", IMAGES, "--output", str(tmp_path / "o"), "--direct_num_workers", "two")
  assert "--direct_num_workers" in err


def test_stray_positional_arguments_from_an_unquoted_glob_are_refused(capsys, tmp_path):
  a, b = sorted(os.listdir(os.path.join(SAMPLE, "images")))[:2]
  err = _usage(capsys, "--images", os.path.join(SAMPLE, "images", a), os.path.join(SAMPLE, "images", b), "--masks",
               MASKS, "--output", str(tmp_path / "o"))
  assert "unexpected argument" in err and b in err and "quote" in err


def test_glob_matching_nothing_names_the_pattern(capsys, tmp_path):
  pattern = str(tmp_path / "nowhere" / "*.tif")
  err = _usage(capsys, "--images", pattern, "--output", str(tmp_path / "o"))
  assert pattern in err and "matches no file" in err


@pytest.mark.parametrize("content, expect", [
    (None, "not found"),
    ("folder", "is not a file"),
    ("run:\n  dilate: two\n", "dilate"),
    ("run:\n  value_range: [0]\n", "value_range"),
    ("run:\n  overwrite: 1\n", "true or false"),
    ("run:\n  bogus: 1\n", "unknown keys"),
    ("run: [1, 2]\n", "mapping"),
    ("run:\n  dilate: [\n", "YAML"),
    ("run:\n  mask_threshold: .nan\n", "finite"),
    ("expect:\n  bands: three\n", "expect.bands"),
])
def test_every_config_problem_is_one_line(capsys, tmp_path, content, expect):
  cfg = tmp_path / "c.yaml"
  if content == "folder":
    cfg.mkdir()
  elif content is not None:
    cfg.write_text(content)
  err = _usage(capsys, "--images", IMAGES, "--masks", MASKS, "--output", str(tmp_path / "o"), "--config", str(cfg))
  assert expect in err


@pytest.mark.parametrize(
    "flag", [["--bands", "0,1,2"], ["--value-range", "nan,nan"], ["--value-range", "0,inf"],
             ["--mask-threshold", "nan"], ["--dilate", "-1"], ["--co", "COMPRESS"], ["--max-batch-size", "-1"],
             ["--min-batch-size", "0"], ["--model-copies", "0"], ["--mask-source", "nodata"]])
def test_bad_flag_values_are_one_line(capsys, tmp_path, flag):
  _usage(capsys, "--images", IMAGES, "--masks", MASKS, "--output", str(tmp_path / "o"), *flag)


@pytest.mark.parametrize("option, said", [("BLOCKXSIZE=7", "multiples of 16"), ("COMPRESS=NOPE", "unexpected value"),
                                          ("NOSUCH=1", "does not support creation option NOSUCH")])
def test_creation_options_gdal_refuses_are_usage_errors_before_any_work(capsys, tmp_path, mean_model, option, said):
  """GDAL refuses BLOCKXSIZE=7 at every write and ignores COMPRESS=NOPE or an
  unknown name with a warning: each is exit 2 at launch, nothing written."""
  err = _usage(capsys, "--images", IMAGES, "--masks", MASKS, "--output", str(tmp_path / "o"), "--model", mean_model,
               "--co", option)
  assert said in err and "--co" in err
  assert not (tmp_path / "o" / "restored").exists()


def test_output_that_is_a_file_or_read_only(capsys, tmp_path):
  f = tmp_path / "file"
  f.write_text("x")
  assert "is a file" in _usage(capsys, "--images", IMAGES, "--masks", MASKS, "--output", str(f))
  ro = tmp_path / "ro"
  ro.mkdir()
  ro.chmod(0o500)
  try:
    if os.access(ro, os.W_OK):
      pytest.skip("running as root: a read-only folder is writable")
    assert "not writable" in _usage(capsys, "--images", IMAGES, "--masks", MASKS, "--output", str(ro / "o"))
  finally:
    ro.chmod(0o700)


def test_model_card_with_wrong_types(capsys, tmp_path, mean_model):
  bad = tmp_path / "model"
  shutil.copytree(mean_model, bad)
  card = bad / "assets" / "cloudfill.json"
  data = json.loads(card.read_text())
  data["bands"] = "three"
  card.write_text(json.dumps(data))
  err = _usage(capsys, "--images", IMAGES, "--masks", MASKS, "--output", str(tmp_path / "o"), "--model", str(bad))
  assert "bands" in err and "three" in err
  card.write_text("{not json")
  _usage(capsys, "--images", IMAGES, "--masks", MASKS, "--output", str(tmp_path / "o"), "--model", str(bad))


def test_object_storage_without_credentials_fails_fast(capsys, tmp_path, monkeypatch):
  for k in list(os.environ):
    if k.startswith(("AWS_", "GOOGLE_", "CLOUDSDK_", "STORAGE_EMULATOR")):
      monkeypatch.delenv(k)
  monkeypatch.setenv("HOME", str(tmp_path))
  monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
  monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
  start = time.time()
  err = _usage(capsys, "--images", IMAGES, "--masks", MASKS, "--output", str(tmp_path / "o"), "--model",
               "gs://no-bucket/model")
  assert "gs://" in err and "credentials" in err
  err = _usage(capsys, "--images", IMAGES, "--masks", MASKS, "--output", "s3://no-bucket/out")
  assert "s3://" in err and "credentials" in err
  assert time.time() - start < 15


def test_version(capsys):
  assert cli.main(["--version"]) == 0
  out = capsys.readouterr().out
  assert out.startswith("cloudfill ") and out.split()[1][0].isdigit()


def test_dry_run_lists_and_writes_nothing(capsys, tmp_path, mean_model):
  images = tmp_path / "in"
  shutil.copytree(os.path.join(SAMPLE, "images"), images)
  (images / "junk.tif").write_bytes(b"not a tiff")
  names = sorted(os.listdir(images))
  out = tmp_path / "out"
  rc = cli.main([
      "run", "--images",
      str(images / "*.tif"), "--masks",
      MASKS.replace("{stem}", "{stem}"), "--output",
      str(out), "--model", mean_model, "--config", "landsat8_l1", "--dry-run"
  ])
  stdout = capsys.readouterr().out
  assert rc == 0 and not out.exists()
  lines = stdout.strip().splitlines()
  assert len(lines) == len(names) + 1
  assert sum(l.startswith("restore ") for l in lines) == len(names) - 1
  junk = [l for l in lines if "junk.tif" in l][0]
  assert junk.startswith("refuse") and "mask not found" in junk  # No junk mask: refused before its header.
  assert "would restore 7, skip 0, refuse 1; nothing was written" in lines[-1]


def test_dry_run_plan_skips_up_to_date_and_refuses_misfits(tmp_path, mean_model):
  from pipeline import options, preflight
  from tests.helpers import write_geotiff
  images = tmp_path / "in"
  write_geotiff(str(images / "ok.tif"), np.full((40, 40, 3), 9000, np.uint16))
  write_geotiff(str(images / "two.tif"), np.full((40, 40, 2), 9000, np.uint16))
  args, _ = options.parse(["--images", str(images / "*.tif"), "--output", str(tmp_path / "o"), "--nodata", "0"])
  card = preflight.read_card(mean_model)
  planned = {os.path.basename(p.path): p for p in dryrun.plan(preflight.match_inputs(args.images), args, card)}
  assert planned["ok.tif"].action == dryrun.RESTORE
  assert planned["two.tif"].action == dryrun.REFUSE and "model takes 3" in planned["two.tif"].reason


def test_progress_line_counts_outputs(tmp_path):
  assert progress.progress_text(10, 40, 5.0) == "restored 10 of 40 inputs, 2.00/s, ETA 0m15s"
  folder = tmp_path / "restored"
  folder.mkdir()
  with progress.Progress(str(folder), 3, after=0.0, every=0.2) as p:
    (folder / "a.tif").write_bytes(b"x")
    (folder / ".a.tif.123.tmp").write_bytes(b"x")  # Temporaries are not outputs.
    time.sleep(0.5)
    assert p.count() == 1
  assert p.lines >= 1


def test_noise_filter_drops_start_up_noise_and_keeps_the_rest(tmp_path):
  script = (
      "import os, sys\n"
      "sys.path.insert(0, %r)\n"
      "from pipeline.progress import NoiseFilter\n"
      "with NoiseFilter():\n"
      "  os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n')\n"
      "  os.write(2, b'I0000 00:00:1795712310.373766    7908 port.cc:153] oneDNN custom operations are on.\\n')\n"
      "  os.write(2, b'E0000 00:00:1795712313.692364    7908 cuda_platform.cc:52] failed call to cuInit: X\\n')\n"
      "  print('WARNING root: Resource module is not available for current platform', file=sys.stderr)\n"
      "  print('WARNING apache_beam.io.filebasedsink: No shards found to finalize.', file=sys.stderr)\n"
      "  print('cloudfill run: a real error', file=sys.stderr)\n"
      "print('after', file=sys.stderr)\n") % ROOT
  done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
  assert done.returncode == 0
  assert done.stderr.splitlines() == ["cloudfill run: a real error", "after"]


@pytest.mark.slow
def test_a_real_run_is_quiet_and_ends_with_the_top_reasons(tmp_path, mean_model):
  """A subprocess, as a user runs it: no TensorFlow/Beam noise, counts, reasons, exit 3."""
  images = tmp_path / "in"
  masks = tmp_path / "masks"
  shutil.copytree(os.path.join(SAMPLE, "images"), images)
  shutil.copytree(os.path.join(SAMPLE, "masks"), masks)
  for name in ("bad1", "bad2"):
    (images / f"{name}.tif").write_bytes(b"II*\x00garbage")
    shutil.copy(next(masks.glob("*.png")), masks / f"{name}.png")
  env = dict(os.environ, PYTHONPATH=ROOT)
  env.pop("TF_CPP_MIN_LOG_LEVEL", None)
  done = subprocess.run([
      sys.executable, "-m", "pipeline.cli", "run", "--images",
      str(images / "*.tif"), "--masks",
      str(masks / "{stem}.png"), "--output",
      str(tmp_path / "out"), "--model", mean_model, "--config", "landsat8_l1", "-q"
  ],
                        capture_output=True,
                        text=True,
                        timeout=300,
                        env=env,
                        cwd=ROOT)
  assert done.returncode == 3, done.stderr
  assert not any(
      n in done.stderr
      for n in ("oneDNN", "cuInit", "absl::InitializeLog", "Resource module", "No shards found")), done.stderr
  out = done.stdout.splitlines()
  assert out[0].startswith("matched 9: restored 7, skipped 0, failed 2")
  assert "top reasons" in out[1]
  assert all(line.strip().startswith("1 × failed: decode:") for line in out[2:4]), out
  assert "restored tiles:" not in done.stdout and "report:" not in done.stdout  # -q
  assert os.path.getsize(tmp_path / "out" / "report.html") > 0  # Written all the same.


def test_version_and_help_import_neither_beam_nor_tensorflow():
  """`cloudfill --version` answered in a fraction of a second (it took 5 s when
  cli imported every verb's module up front)."""
  code = ("import sys; from pipeline import cli; cli.main(['--version']); cli.main(['--help']); "
          "print(sorted(m for m in ('apache_beam', 'tensorflow', 'keras', 'rasterio') if m in sys.modules))")
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT, check=True)
  lines = done.stdout.strip().splitlines()
  assert lines[0].startswith("cloudfill ") and lines[-1] == "[]", done.stdout
  assert "``" not in done.stdout  # The usage text without its docstring markup.


def test_a_pattern_that_matches_only_names_beam_cannot_list_is_a_usage_error(capsys, tmp_path):
  """Beam reads a backslash in a local name as an escape: `back\\slash.tif`
  matches `*.tif` for glob but not for Beam. Beside other inputs it is a dead
  letter (tests/test_hostile_inputs.py); alone there is nothing to run."""
  (tmp_path / "in").mkdir()
  shutil.copy(sorted(glob.glob(IMAGES))[0], tmp_path / "in" / "back\\slash.tif")
  err = _usage(capsys, "--images", str(tmp_path / "in" / "*.tif"), "--masks", MASKS, "--output", str(tmp_path / "o"))
  assert "cannot list" in err and "back\\\\slash.tif" in err, err


def test_help_into_a_closed_pipe_is_no_traceback():
  """`cloudfill --help | head -1`: the reader left before the text was written."""
  for argv in (["--help"], ["run", "--help"]):
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *argv],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            cwd=ROOT)
    proc.stdout.close()  # Before the interpreter has even started: every write meets a closed pipe.
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and "Traceback" not in err and "BrokenPipe" not in err, (argv, err)

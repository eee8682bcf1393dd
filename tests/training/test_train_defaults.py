"""``cloudfill train`` has sane defaults (issue 12.9): it stops by itself and
finds the data beside the repository, and --help says so."""

import os

from training import train
from training.defaults import DEFAULT_TRAIN_MINUTES, REPO_ROOT, default_data_dir


def test_train_stops_by_default_and_data_is_relative(monkeypatch, capsys):
  monkeypatch.delenv("CLOUDFILL_SHARED_DATA", raising=False)
  args = train._parse([])
  assert args.minutes == DEFAULT_TRAIN_MINUTES > 0 and args.steps == 0
  assert args.data == os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "data"))
  assert train._parse(["--steps", "5"]).minutes == 0.0
  assert train._parse(["--minutes", "2"]).minutes == 2.0
  monkeypatch.setenv("CLOUDFILL_SHARED_DATA", "/elsewhere/data")
  assert default_data_dir() == "/elsewhere/data" and train._parse([]).data == "/elsewhere/data"
  try:
    train._parse(["--help"])
  except SystemExit:
    pass
  text = " ".join(capsys.readouterr().out.split())
  assert "../shared/data" in text and f"default {DEFAULT_TRAIN_MINUTES:g} when --steps" in text


def test_variant_parsing():
  assert train.parse_variant("a:lr=3e-4,loss=mse,ema=0.999,widths=24/48/96/128,tv-weight=0") == ("a", {
      "lr": 3e-4,
      "loss": "mse",
      "ema": 0.999,
      "widths": "24,48,96,128",
      "tv_weight": 0.0
  })
  assert train.parse_variant("plain") == ("plain", {})
  for bad in ("a:lr", "a:speed=3", "a:lr=fast", "a:loss=huber", "a:gan=wgan", ":lr=1", "a b:lr=1"):
    try:
      train.parse_variant(bad)
    except ValueError as e:
      assert "--variant" in str(e)
    else:
      raise AssertionError(f"{bad!r} was accepted")


def test_bad_variant_is_a_usage_error(capsys):
  for argv in (["--variant", "a:lr=x"], ["--variant", "a:lr=1e-3", "--variant", "a:lr=1e-4"]):
    try:
      train._parse(argv)
    except SystemExit as e:
      assert e.code == 2
    else:
      raise AssertionError(f"{argv} was accepted")
  err = capsys.readouterr().err
  assert "is not KEY=VALUE" not in err and "could not convert" in err and "names must differ" in err
  args = train._parse(["--variant", "a:loss=mse", "--variant", "b:ema=0.99"])
  assert args.variants == [("a", {"loss": "mse"}), ("b", {"ema": 0.99})]


def test_region_reuse_is_validated(capsys):
  try:
    train._parse(["--region-reuse", "0"])
  except SystemExit as e:
    assert e.code == 2
  else:
    raise AssertionError("--region-reuse 0 was accepted")
  assert "--region-reuse and --crops-per-region must be 1 or more" in capsys.readouterr().err
  assert train._parse(["--region-reuse", "4"]).region_reuse == 4
  assert train._parse([]).region_reuse == 1

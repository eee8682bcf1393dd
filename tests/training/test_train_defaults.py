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

"""Shared fixtures for the training tests."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

DATA = os.environ.get("CLOUDFILL_DATA",
                      os.path.join(os.path.dirname(ROOT), "shared", "data"))


@pytest.fixture(scope="session")
def data_dir():
  if not os.path.isdir(DATA):
    pytest.skip(f"real data folder {DATA} is absent (see its README.md)")
  return DATA


@pytest.fixture(scope="session")
def tiny_generator():
  from training.generator import build_generator
  return build_generator(bands=3, encoder=(8, 8, 16, 16, 16),
                         decoder=(16, 16, 8, 8))


@pytest.fixture(scope="session")
def tiny_card():
  from model_loader.contract import ModelCard
  return ModelCard(name="tiny", version="test", bands=3, window=64,
                   overlap=8)


@pytest.fixture(scope="session")
def exported(tmp_path_factory, tiny_generator, tiny_card):
  from training.export import export_saved_model
  out = str(tmp_path_factory.mktemp("model") / "saved")
  export_saved_model(tiny_generator, tiny_card, out)
  return out

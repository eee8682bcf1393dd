"""Shared fixtures: a contract-honouring test model, pipelines, sample paths."""

from __future__ import annotations

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SAMPLE = os.path.join(ROOT, "sample", "landsat8")
from training.defaults import default_data_dir  # noqa: E402  (after the path is set)

SHARED = default_data_dir()  # $CLOUDFILL_SHARED_DATA or ../shared/data


@pytest.fixture(scope="session")
def mean_model(tmp_path_factory) -> str:
  """A mean-fill SavedModel with 64-pixel windows (fast; see model_fixture)."""
  from tests.model_fixture import make_mean_fill_model
  return make_mean_fill_model(str(tmp_path_factory.mktemp("models") / "mean"), window=64, overlap=8)


@pytest.fixture(scope="session")
def context_model(tmp_path_factory) -> str:
  """A SavedModel declaring image, mask, context, guide, guide_mask (see model_fixture)."""
  from tests.model_fixture import make_context_model
  return make_context_model(str(tmp_path_factory.mktemp("models") / "context"), window=64, overlap=8)


@pytest.fixture()
def pipeline():
  """A TestPipeline on the DirectRunner, run (and checked) on exit."""
  from apache_beam.testing.test_pipeline import TestPipeline
  p = TestPipeline(runner="DirectRunner")
  yield p
  p.run().wait_until_finish()


@pytest.fixture(scope="session")
def shared_data() -> str:
  """``../shared/data``; tests that need it skip with a clear message when absent."""
  if not os.path.isdir(SHARED):
    pytest.skip(f"../shared/data not found at {SHARED}: these tests read real scenes and cloud "
                "masks that the repository may not ship (set CLOUDFILL_SHARED_DATA)")
  return SHARED

"""Shared fixtures for the training tests."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from training.defaults import default_data_dir  # noqa: E402  (after the path is set)

DATA = default_data_dir()  # $CLOUDFILL_SHARED_DATA or ../shared/data


@pytest.fixture(scope="session")
def data_dir():
  if not os.path.isdir(DATA):
    pytest.skip(f"real data folder {DATA} is absent (see its README.md)")
  return DATA


@pytest.fixture(scope="session")
def tiny_generator():
  from training.generator import build_generator
  return build_generator(bands=3, stem=8, widths=(8, 16, 16, 16))


@pytest.fixture(scope="session")
def tiny_card():
  from model_loader.contract import ModelCard
  from model_loader.contract import ALL_INPUTS
  return ModelCard(name="tiny",
                   version="test",
                   bands=3,
                   window=64,
                   overlap=8,
                   inputs=ALL_INPUTS,
                   guided=True,
                   context="push_pull")


@pytest.fixture(scope="session")
def exported(tmp_path_factory, tiny_generator, tiny_card):
  from training.export import export_saved_model
  out = str(tmp_path_factory.mktemp("model") / "saved")
  export_saved_model(tiny_generator, tiny_card, out)
  return out


def make_inputs(n, w, c, seed=0, guided=True):
  """The generator's five inputs: a smooth image, a hole, its push-pull
  context and (optionally) a guide date with a gain and offset."""
  import numpy as np
  from transforms.context import push_pull
  from transforms.regression import guided_fill
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:w, 0:w] / float(w)
  out = {k: [] for k in ("image", "mask", "context", "guide", "guide_mask", "target")}
  for i in range(n):
    t = np.stack([
        0.5 + 0.3 * np.sin(3 * yy + i + b) * np.cos(2 * xx - b) + 0.02 * rng.standard_normal((w, w)) for b in range(c)
    ], -1).astype(np.float32)
    m = np.zeros((w, w), np.float32)
    m[w // 4:w // 2 + i, w // 3:w // 2 + 5] = 1
    valid = 1.0 - m
    if guided:
      g = np.clip(t * 0.8 + 0.05, 0, 1)
      gm = np.zeros((w, w), np.float32)
      gm[:w // 8] = 1
      f = guided_fill(t, valid, g, 1.0 - gm)
      context, mapped = f.fill, f.mapped
    else:
      gm, context, mapped = np.ones((w, w), np.float32), push_pull(t, valid), np.zeros_like(t)
    for k, v in (("image", t * valid[..., None]), ("mask", m[..., None]), ("context", context), ("guide", mapped),
                 ("guide_mask", gm[..., None]), ("target", t)):
      out[k].append(v.astype(np.float32))
  return {k: np.stack(v) for k, v in out.items()}

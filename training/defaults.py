"""Defaults of the model's commands that depend on where they run.

The shared data folder is ``$CLOUDFILL_SHARED_DATA`` when set, else
``../shared/data`` beside the repository (as the tests find it), never one
machine's absolute path.
"""

from __future__ import annotations

import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# `cloudfill train` without --steps or --minutes stops after this much wall time.
DEFAULT_TRAIN_MINUTES = 30.0
# The adversarial losses `cloudfill train --gan` offers (training.losses).
ADVERSARIAL = ("hinge", "lsgan")


def default_data_dir() -> str:
  """``$CLOUDFILL_SHARED_DATA`` or ``<repo>/../shared/data`` (normalised)."""
  return os.environ.get("CLOUDFILL_SHARED_DATA") or os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "data"))


# The hole reconstruction losses `cloudfill train --loss` offers (training.losses).
RECONSTRUCTION = ("l1", "mse")

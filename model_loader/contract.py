"""The SavedModel contract shared by the serving pipeline and the trainer.

A cloudfill model is a TensorFlow SavedModel directory with:

* signature ``restore``: inputs ``image`` float32 ``[N, H, W, C]`` scaled to
  0…1 and ``mask`` float32 ``[N, H, W, 1]`` with 1 = missing; output
  ``{"restored": float32 [N, H, W, C]}`` in the same 0…1 scale. H and W may
  be any size (the model pads internally to its multiple).
* signature ``serving_default``: input ``examples``, a string tensor ``[N]`` of
  serialized ``tf.train.Example`` with the features in :data:`EXAMPLE_FEATURES`
  at the card's window size; output ``{"restored": float32 [N, W, W, C]}``.
  This is what tfx-bsl's ``CreateModelHandler`` and TF Serving call.
* asset ``assets/cloudfill.json``: the :class:`ModelCard` below.

This module imports nothing heavier than the standard library, so the
pipeline can read a card without loading TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Sequence

SIGNATURE_RESTORE = "restore"
SIGNATURE_SERVING = "serving_default"
INPUT_IMAGE = "image"
INPUT_MASK = "mask"
INPUT_EXAMPLES = "examples"
OUTPUT_RESTORED = "restored"
ASSET_NAME = "cloudfill.json"

# Feature keys of the serialized tf.train.Example taken by ``serving_default``.
# ``image``: float list of H*W*C values (row-major HWC, 0…1);
# ``mask``: float list of H*W values (1 = missing).
EXAMPLE_FEATURES = ("image", "mask")


@dataclasses.dataclass(frozen=True)
class ModelCard:
  """What a model says about itself (``assets/cloudfill.json``).

  Attributes:
    name: Short model name.
    version: Version string; written into every restored tile's metadata so
      the incremental job knows which model produced it.
    bands: Number of bands the model takes.
    window: Side of the square windows the pipeline cuts (pixels).
    overlap: Overlap between neighbouring windows (pixels).
    pad_multiple: The network's size multiple (it pads internally).
    normalization: How the model expects its ``image`` input. ``"unit"``:
      the pipeline scales values to 0…1 (see ``configs/``); the model itself
      standardises each tile by its known pixels' mean and spread.
    trained_on: Data the weights were trained on (provenance).
    metrics: Validation figures recorded at export (free-form).
    weights_sha256: SHA-256 of the weights (hex; see ``training.export``), or
      "" for cards written before it existed. Restored tiles carry it, and the
      incremental check redoes tiles made by other weights under one version.
  """

  name: str
  version: str
  bands: int
  window: int = 256
  overlap: int = 32
  pad_multiple: int = 32
  normalization: str = "unit"
  trained_on: Sequence[str] = ()
  metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
  weights_sha256: str = ""

  def to_json(self) -> str:
    d = dataclasses.asdict(self)
    d["trained_on"] = list(self.trained_on)
    return json.dumps(d, indent=2, sort_keys=True)

  @classmethod
  def from_json(cls, text: str) -> "ModelCard":
    d = json.loads(text)
    known = {f.name for f in dataclasses.fields(cls)}
    missing = {"name", "version", "bands"} - set(d)
    if missing:
      raise ValueError(f"{ASSET_NAME} lacks required keys: {sorted(missing)}")
    return cls(**{k: v for k, v in d.items() if k in known})

"""The SavedModel contract shared by the serving pipeline and the trainer.

A cloudfill model is a TensorFlow SavedModel directory with:

* signature ``restore``: inputs ``image`` float32 ``[N, H, W, C]`` scaled to
  0…1 and ``mask`` float32 ``[N, H, W, 1]`` with 1 = missing, and for models
  whose card lists them in ``inputs`` (version 2 on): ``context``
  ``[N, H, W, C]`` 0…1 (the tile- or scene-level classical fill of
  :mod:`transforms.context`: the known pixels, a fill in the holes), ``guide``
  ``[N, H, W, C]`` 0…1 (another date mapped to the target's radiometry, 0
  where unusable) and ``guide_mask`` ``[N, H, W, 1]`` (1 = guide unusable;
  all ones = no guide); output ``{"restored": float32 [N, H, W, C]}`` in the
  same 0…1 scale. H and W may be any size (the model pads internally).
* signature ``serving_default``: input ``examples``, a string tensor ``[N]`` of
  serialized ``tf.train.Example`` with the features in :data:`EXAMPLE_FEATURES`
  (those the card's ``inputs`` name; ``guide`` and ``guide_mask`` may be left
  out: no guide) at the card's window size; output
  ``{"restored": float32 [N, W, W, C]}``.
  This is what tfx-bsl's ``CreateModelHandler`` and TF Serving call.
* asset ``assets/cloudfill.json``: the :class:`ModelCard` below.

This module imports nothing heavier than the standard library, so the
pipeline can read a card without loading TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional, Sequence

SIGNATURE_RESTORE = "restore"
SIGNATURE_SERVING = "serving_default"
INPUT_IMAGE = "image"
INPUT_MASK = "mask"
INPUT_CONTEXT = "context"
INPUT_GUIDE = "guide"
INPUT_GUIDE_MASK = "guide_mask"
INPUT_EXAMPLES = "examples"
# Every input a model may take, in this order; a card lists those it takes.
ALL_INPUTS = (INPUT_IMAGE, INPUT_MASK, INPUT_CONTEXT, INPUT_GUIDE, INPUT_GUIDE_MASK)
OUTPUT_RESTORED = "restored"
ASSET_NAME = "cloudfill.json"
# The model's dynamic-range TFLite file beside the card (``cloudfill export
# --tflite-asset``), what ``--backend tflite`` runs.
TFLITE_ASSET = "cloudfill_dynamic.tflite"

# Feature keys of the serialized tf.train.Example taken by ``serving_default``.
# ``image``: float list of H*W*C values (row-major HWC, 0…1);
# ``mask``: float list of H*W values (1 = missing); ``context`` and ``guide``
# like ``image``, ``guide_mask`` like ``mask`` (models that take them).
EXAMPLE_FEATURES = ("image", "mask")
EXAMPLE_FEATURES_V2 = ALL_INPUTS


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
    inputs: The ``restore`` inputs the model takes (a prefix-free subset of
      :data:`ALL_INPUTS`; models before 2.0 take ``image`` and ``mask``).
    guided: The model uses ``guide``/``guide_mask``.
    context: How the pipeline computes ``context`` (``"push_pull"``), or
      None for models without that input.
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
  inputs: Sequence[str] = (INPUT_IMAGE, INPUT_MASK)
  guided: bool = False
  context: Optional[str] = None

  def __post_init__(self):
    unknown = set(self.inputs) - set(ALL_INPUTS)
    if unknown or INPUT_IMAGE not in self.inputs or INPUT_MASK not in self.inputs:
      raise ValueError(f"{ASSET_NAME}: inputs must include image and mask and be among "
                       f"{list(ALL_INPUTS)}, got {list(self.inputs)}")
    if self.guided and not {INPUT_GUIDE, INPUT_GUIDE_MASK} <= set(self.inputs):
      raise ValueError(f"{ASSET_NAME}: a guided model must take guide and guide_mask")

  weights_sha256: str = ""

  @property
  def takes_context(self) -> bool:
    return INPUT_CONTEXT in self.inputs

  def to_json(self) -> str:
    d = dataclasses.asdict(self)
    d["trained_on"] = list(self.trained_on)
    d["inputs"] = list(self.inputs)
    return json.dumps(d, indent=2, sort_keys=True)

  @classmethod
  def from_json(cls, text: str) -> "ModelCard":
    d = json.loads(text)
    known = {f.name for f in dataclasses.fields(cls)}
    missing = {"name", "version", "bands"} - set(d)
    if missing:
      raise ValueError(f"{ASSET_NAME} lacks required keys: {sorted(missing)}")
    kept = {k: v for k, v in d.items() if k in known}
    if "inputs" in kept:
      kept["inputs"] = tuple(kept["inputs"])
    return cls(**kept)

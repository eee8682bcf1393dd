"""Finding a model: the shipped default, or a directory on any filesystem.

Reading the card needs no TensorFlow, so the pipeline can configure itself
(window size, bands) while it builds the graph.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
from typing import Optional

from apache_beam.io.filesystems import FileSystems

from model_loader.contract import ASSET_NAME, ModelCard

DEFAULT_MODEL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default_model")


def resolve(uri: Optional[str]) -> str:
  """The model URI to use: ``uri``, or the default model shipped in the package."""
  return uri or DEFAULT_MODEL_DIR


def _join(base: str, *parts: str) -> str:
  return FileSystems.join(base, *parts)


def read_card(uri: str) -> ModelCard:
  """Reads ``assets/cloudfill.json`` of the SavedModel at ``uri``.

  Raises:
    FileNotFoundError: ``uri`` is not a cloudfill SavedModel.
    ValueError: the card is malformed.
  """
  path = _join(uri, "assets", ASSET_NAME)
  if not FileSystems.exists(_join(uri, "saved_model.pb")):
    raise FileNotFoundError(f"no SavedModel at {uri} (saved_model.pb missing)")
  if not FileSystems.exists(path):
    raise FileNotFoundError(f"{uri} is a SavedModel but not a cloudfill model: {path} missing")
  with FileSystems.open(path) as f:
    return ModelCard.from_json(f.read().decode("utf-8"))


def stage_locally(uri: str) -> str:
  """Returns a local directory holding the SavedModel at ``uri``.

  Local paths are used in place; object-storage models are copied once per
  process into a temporary directory (TensorFlow reads local files only here).
  """
  if FileSystems.get_scheme(uri) is None:
    return uri
  cached = _STAGED.get(uri)
  if cached and os.path.exists(cached):
    return cached
  dest = tempfile.mkdtemp(prefix="cloudfill-model-")
  prefix = uri.rstrip("/") + "/"
  for meta in FileSystems.match([prefix + "**"])[0].metadata_list:
    rel = meta.path[len(prefix):]
    if not rel or rel.endswith("/"):
      continue
    local = os.path.join(dest, *posixpath.split(rel))
    os.makedirs(os.path.dirname(local), exist_ok=True)
    with FileSystems.open(meta.path, compression_type="uncompressed") as src, open(local, "wb") as dst:
      while chunk := src.read(1 << 22):
        dst.write(chunk)
  _STAGED[uri] = dest
  return dest


_STAGED: dict[str, str] = {}

"""Incremental runs: restore only what is missing or out of date.

A restored tile records, in its own metadata (GeoTIFF tags, PNG text), the
model version that made it and the modification time of its input. A tile is
up to date when its output exists, was made by the same model version, and
its input has not changed since. A re-run over the same inputs therefore
writes nothing, and a nightly run over a growing prefix does only new tiles.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Iterator

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from transforms import counters
from transforms.raster_io import read_tags_at, split_ext
from transforms.records import TilePair

TAG_MODEL_VERSION = "CLOUDFILL_MODEL_VERSION"
TAG_SOURCE_MTIME = "CLOUDFILL_SOURCE_MTIME"
TAG_SOURCE = "CLOUDFILL_SOURCE"
TAG_WEIGHTS = "CLOUDFILL_MODEL_WEIGHTS_SHA256"
UP_TO_DATE = "up_to_date"


def output_path(output_dir: str, image_path: str) -> str:
  """``{output}/restored/{stem}{ext}``: deterministic, one per input stem."""
  stem, ext = split_ext(image_path)
  return FileSystems.join(output_dir, "restored", stem + ext)


def provenance_tags(pair: TilePair, model_version: str, weights_sha256: str = "") -> dict[str, str]:
  tags = {TAG_MODEL_VERSION: model_version, TAG_SOURCE_MTIME: repr(pair.mtime), TAG_SOURCE: pair.image_path}
  if weights_sha256:
    tags[TAG_WEIGHTS] = weights_sha256
  return tags


def is_up_to_date(pair: TilePair, output_dir: str, model_version: str, weights_sha256: str = "") -> bool:
  """True when ``pair``'s output exists, was made by ``model_version`` (and,
  when given, weights ``weights_sha256``) from an input no older than ``pair``'s.

  The output path is checked literally (never as a glob: ``a?.tif`` must not
  find ``ab.tif``), and only its tags are read. An output without cloudfill's
  tags (a JPEG, a file not made by cloudfill, a truncated one, a directory)
  is never up to date: it is redone.
  """
  out = output_path(output_dir, pair.image_path)
  if not FileSystems.exists(out):
    return False
  tags = read_tags_at(out)
  if TAG_MODEL_VERSION not in tags:
    return False
  try:
    source_mtime = float(tags.get(TAG_SOURCE_MTIME, "nan"))
  except ValueError:
    return False
  if weights_sha256 and tags.get(TAG_WEIGHTS) != weights_sha256:
    return False  # Other weights under the same version string.
  return tags[TAG_MODEL_VERSION] == model_version and source_mtime >= pair.mtime


class SkipUpToDate(beam.DoFn):
  """Passes pairs that need work; up-to-date ones go to ``up_to_date``."""

  def __init__(self, output_dir: str, model_version: str, overwrite: bool, weights_sha256: str = ""):
    self._output = output_dir
    self._version = model_version
    self._overwrite = overwrite
    self._weights = weights_sha256

  def process(self, pair: TilePair) -> Iterator:
    try:
      current = not self._overwrite and is_up_to_date(pair, self._output, self._version, self._weights)
    except Exception as e:  # pylint: disable=broad-except
      # The check could not be made (e.g. storage refused it): redo the tile.
      logging.getLogger(__name__).warning("cannot check the output of %s, redoing it: %s", pair.image_path, e)
      current = False
    if current:
      counters.inc("skipped_up_to_date")
      yield beam.pvalue.TaggedOutput(UP_TO_DATE, pair)
    else:
      yield pair


@dataclasses.dataclass
class Incremental(beam.PTransform):
  """Splits pairs into main (to do) and ``up_to_date`` (skip)."""

  output_dir: str
  model_version: str
  overwrite: bool = False
  weights_sha256: str = ""

  def expand(self, pairs):
    return pairs | beam.ParDo(SkipUpToDate(self.output_dir, self.model_version, self.overwrite,
                                           self.weights_sha256)).with_outputs(UP_TO_DATE, main="todo")

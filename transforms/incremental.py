"""Incremental runs: restore only what is missing or out of date.

A restored tile records, in its own metadata (GeoTIFF tags, PNG text), the
model version that made it, its input's path and that input's modification
time. A tile is up to date when its output exists, was made by the same
model version from the same input path at the same modification time, and
its mask file (if it has one) was not modified after the output was written.
A re-run over the same inputs therefore writes nothing, a nightly run over a
growing prefix does only new tiles, and an edited mask, or another file put
under the same name (even with an older time, as ``cp -p`` leaves it), is
redone. Flags are not compared: a re-run with other flags needs ``--overwrite``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Iterator, Optional

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


def modified_at(path: str) -> Optional[float]:
  """A file's last-modified time (seconds since the epoch), or None if it cannot be told.

  The path is taken literally, never as a glob (object storage is listed by
  the path and the exact name picked out).
  """
  if FileSystems.get_scheme(path) is None:
    try:
      return os.stat(path).st_mtime
    except OSError:
      return None
  try:
    found = FileSystems.match([path])[0].metadata_list
  except Exception:  # pylint: disable=broad-except
    return None
  times = [m.last_updated_in_seconds for m in found if m.path == path]
  return float(times[0]) if times and times[0] else None


def _same_source(tagged: Optional[str], path: str) -> bool:
  """Whether the output's ``CLOUDFILL_SOURCE`` names ``path`` (local paths compared resolved)."""
  if tagged is None:
    return True  # Outputs written before the tag existed.
  if FileSystems.get_scheme(path) is None and FileSystems.get_scheme(tagged) is None:
    return os.path.realpath(tagged) == os.path.realpath(path)
  return tagged == path


def is_up_to_date(pair: TilePair, output_dir: str, model_version: str, weights_sha256: str = "") -> bool:
  """True when ``pair``'s output exists, was made by ``model_version`` (and,
  when given, weights ``weights_sha256``) from this input path at this
  input's modification time, and the mask file, if any, is not newer than
  the output.

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
  if tags[TAG_MODEL_VERSION] != model_version or not abs(source_mtime - pair.mtime) <= 1e-6:  # NaN: not equal.
    return False  # Another model, or the input changed (a newer or an older file).
  if not _same_source(tags.get(TAG_SOURCE), pair.image_path):
    return False  # Another file under the same name made this output.
  if pair.mask_path:
    mask_time, out_time = modified_at(pair.mask_path), modified_at(out)
    if mask_time is None or out_time is None or mask_time > out_time:
      return False  # The mask was edited after the output was written (or cannot be told).
  return True


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

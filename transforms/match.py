"""Stage 1: match the images and pair each with its mask."""

from __future__ import annotations

import dataclasses
import posixpath
from typing import Iterator, Optional

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems

from transforms import counters
from transforms.raster_io import PIL_EXTS, TIFF_EXTS, split_ext
from transforms.records import DeadLetter, TilePair

DEAD = "dead"
IMAGE_EXTS = TIFF_EXTS + PIL_EXTS


def mask_path_for(image_path: str, template: str) -> str:
  """Fills ``{stem}`` and ``{dir}`` of a mask template for one image.

  >>> mask_path_for("gs://b/img/a.tif", "gs://b/masks/{stem}.png")
  'gs://b/masks/a.png'
  >>> mask_path_for("/data/x/t1.tif", "{dir}/{stem}_mask.tif")
  '/data/x/t1_mask.tif'
  """
  stem, _ = split_ext(image_path)
  folder = posixpath.dirname(image_path) if "://" in image_path else _local_dir(image_path)
  return template.format(stem=stem, dir=folder)


def _local_dir(path: str) -> str:
  import os  # pylint: disable=import-outside-toplevel
  return os.path.dirname(path)


def unreadable_local_matches(pattern: str) -> list[DeadLetter]:
  """Local paths ``pattern`` matches that Beam's matcher silently drops.

  Beam skips any entry it cannot stat: broken symlinks and symlink loops would
  vanish from the run without a trace. They are dead letters instead.
  """
  if FileSystems.get_scheme(pattern) is not None:
    return []
  # pylint: disable=import-outside-toplevel
  import os
  import re

  from apache_beam.io.filesystem import FileSystem
  prefix = re.match(r"^[^[*?]*", pattern).group(0)
  if prefix == pattern:
    return []
  regex = re.compile(FileSystem.translate_pattern(pattern))
  dead = []
  for base, _, files in os.walk(os.path.dirname(prefix) or "."):  # As Beam lists: links not followed.
    for name in sorted(files):
      path = os.path.join(base, name)
      if not regex.match(path):
        continue
      try:
        os.stat(path)
      except OSError as e:
        dead.append(DeadLetter(path, "match", f"cannot read the file: {e.strerror or e} "
                                              "(a broken symlink or a symlink loop?)"))
  return dead


class PairWithMask(beam.DoFn):
  """``FileMetadata`` -> :class:`TilePair`, or a dead letter (tag ``dead``)."""

  def __init__(self, mask_template: Optional[str]):
    self._template = mask_template

  def process(self, meta) -> Iterator:
    path = meta.path
    stem, ext = split_ext(path)
    counters.inc("matched")
    if ext.lower() not in IMAGE_EXTS:
      yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(
          path, "match", f"unsupported extension {ext!r}; expected one of {IMAGE_EXTS}"))
      return
    mask_path = None
    if self._template:
      mask_path = mask_path_for(path, self._template)
      try:
        found = FileSystems.exists(mask_path)
      except Exception as e:  # pylint: disable=broad-except
        yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(path, "match", f"cannot check mask {mask_path}: {e}"))
        return
      if not found:
        yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(path, "match", f"mask not found: {mask_path}"))
        return
    yield TilePair(image_path=path, stem=stem, mask_path=mask_path,
                   mtime=float(getattr(meta, "last_updated_in_seconds", 0.0) or 0.0),
                   size_bytes=int(meta.size_in_bytes or 0))


class FirstPerStem(beam.DoFn):
  """One input per output name: of several images with the same stem, the
  first path (sorted) wins and the others are dead letters."""

  def process(self, grouped):
    _, pairs = grouped
    pairs = sorted(pairs, key=lambda p: p.image_path)
    yield pairs[0]
    for other in pairs[1:]:
      counters.inc("failed_duplicate_stem")
      yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(
          other.image_path, "match", f"same output name as {pairs[0].image_path}"))


@dataclasses.dataclass
class MatchPairs(beam.PTransform):
  """Matches ``pattern`` and pairs each image with its mask.

  Returns a dict: ``pairs`` holds :class:`TilePair` records, ``dead`` holds
  :class:`DeadLetter` records. Matching is followed by a ``Reshuffle`` so that
  the work spreads over workers.

  Attributes:
    pattern: A glob on any Beam filesystem.
    mask_template: Where each image's mask is (``{stem}``, ``{dir}``), or None
      when masks come from the image itself.
    since: Only images modified at or after this time (epoch seconds).
  """

  pattern: str
  mask_template: Optional[str] = None
  since: Optional[float] = None

  def expand(self, pbegin):
    since = self.since
    metas = (pbegin
             | "MatchFiles" >> fileio.MatchFiles(self.pattern, empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW)
             | "Since" >> beam.Filter(lambda m: since is None or (m.last_updated_in_seconds or 0) >= since)
             | "Reshuffle" >> beam.Reshuffle())
    paired = metas | "Pair" >> beam.ParDo(PairWithMask(self.mask_template)).with_outputs(DEAD, main="pairs")
    unique = (paired.pairs
              | "ByStem" >> beam.Map(lambda p: (p.stem, p))
              | "GroupByStem" >> beam.GroupByKey()
              | "FirstPerStem" >> beam.ParDo(FirstPerStem()).with_outputs(DEAD, main="pairs"))
    unreadable = pbegin | "Unreadable" >> beam.Create(unreadable_local_matches(self.pattern))
    dead = (paired[DEAD], unique[DEAD], unreadable) | "FlattenDead" >> beam.Flatten()
    return {"pairs": unique.pairs, DEAD: dead}

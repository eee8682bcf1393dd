"""Stage 1: match the images and pair each with its mask."""

from __future__ import annotations

import dataclasses
import logging
import os
import posixpath
import re
from typing import Iterator, Optional

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems

from transforms import counters
from transforms.raster_io import PIL_EXTS, TIFF_EXTS, split_ext
from transforms.records import DEAD, DeadLetter, TilePair

IMAGE_EXTS = TIFF_EXTS + PIL_EXTS

TEMPLATE_FIELDS = ("stem", "dir", "date")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def check_template(template: str, flag: str = "--masks") -> str:
  """Returns ``template`` when its placeholders are only ``{stem}`` and ``{dir}``
  (``{date}`` is filled from ``--date`` before the run starts).

  Raises:
    ValueError: another placeholder (``{0}``, ``{name}``, ``{stem.__class__}``),
      or ``{date}`` left without ``--date``.
  """
  names = [m.group(1) for m in _PLACEHOLDER.finditer(template)]
  bad = [n for n in names if n not in TEMPLATE_FIELDS]
  if bad:
    raise ValueError(f"{flag} {template!r}: unknown placeholder {{{bad[0]}}}; "
                     "a template may hold only {stem}, {dir} and {date}")
  if "date" in names:
    raise ValueError(f"{flag} {template!r} has {{date}} but no --date was given")
  return template


def fill_template(template: str, **values: str) -> str:
  """Substitutes ``{stem}``, ``{dir}``, ``{date}`` literally: nothing is evaluated
  (unlike ``str.format``), and any other ``{…}`` is refused.

  >>> fill_template("{dir}/{stem}.png", stem="a", dir="/x")
  '/x/a.png'
  """

  def sub(m: re.Match) -> str:
    name = m.group(1)
    if name not in TEMPLATE_FIELDS or values.get(name) is None:
      raise ValueError(f"template {template!r}: no value for {m.group(0)}")
    return values[name]

  return _PLACEHOLDER.sub(sub, template)


def mask_path_for(image_path: str, template: str) -> str:
  """Fills ``{stem}`` and ``{dir}`` of a mask template for one image.

  >>> mask_path_for("gs://b/img/a.tif", "gs://b/masks/{stem}.png")
  'gs://b/masks/a.png'
  >>> mask_path_for("/data/x/t1.tif", "{dir}/{stem}_mask.tif")
  '/data/x/t1_mask.tif'
  """
  stem, _ = split_ext(image_path)
  folder = posixpath.dirname(image_path) if "://" in image_path else os.path.dirname(image_path)
  return fill_template(template, stem=stem, dir=folder)


def glob_escape(path: str) -> str:
  """``path`` as a Beam match pattern that matches only itself (``[``, ``?``, ``*`` escaped)."""
  return "".join(f"[{c}]" if c in "[?*" else c for c in path)


def inside(path: str, folder: str) -> bool:
  """True when ``path`` is ``folder`` or lies under it (local paths resolved)."""
  if FileSystems.get_scheme(path) is None and FileSystems.get_scheme(folder) is None:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)
  folder = folder.rstrip("/")
  return path == folder or path.startswith(folder + "/")


BACKSLASH_REASON = ("a backslash in the file name: Beam's file matching reads it as an escape and cannot list "
                    "the file; rename it")


def unreadable_local_matches(pattern: str, exclude: Optional[str] = None) -> list[DeadLetter]:
  """Local paths ``pattern`` matches that Beam's matcher silently drops.

  Beam skips any entry it cannot stat and any directory: broken symlinks,
  symlink loops, and directories (or symlinks to directories) named like
  images would vanish from the run without a trace. So do files with a
  backslash in their name (``back\\slash.tif``: Beam's pattern reads it as an
  escape, and ``*`` never matches it). They are dead letters instead (the
  output tree ``exclude`` aside).
  """
  if FileSystems.get_scheme(pattern) is not None:
    return []
  from apache_beam.io.filesystem import FileSystem  # pylint: disable=import-outside-toplevel
  prefix = re.match(r"^[^[*?]*", pattern).group(0)
  if prefix == pattern:
    if os.path.isdir(pattern):
      return [DeadLetter(pattern, "match", "a directory, not a file")]
    return []
  regex = re.compile(FileSystem.translate_pattern(pattern))
  dead = []
  for base, dirs, files in os.walk(os.path.dirname(prefix) or "."):  # As Beam lists: links not followed.
    if exclude and inside(base, exclude):
      dirs[:] = []
      continue
    for name in sorted(dirs):
      path = os.path.join(base, name)
      if regex.match(path) and not (exclude and inside(path, exclude)):
        dead.append(DeadLetter(path, "match", "a directory (or a symlink to one), not a file"))
    for name in sorted(files):
      path = os.path.join(base, name)
      if "\\" in name:
        # As glob would: only a wildcard matches the backslash (NUL stands in: never a literal of the pattern).
        if regex.match(os.path.join(base, name.replace("\\", "\0"))):
          dead.append(DeadLetter(path, "match", BACKSLASH_REASON))
        continue
      if not regex.match(path):
        continue
      try:
        os.stat(path)
      except OSError as e:
        dead.append(
            DeadLetter(path, "match", f"cannot read the file: {e.strerror or e} "
                       "(a broken symlink or a symlink loop?)"))
  return dead


class PairWithMask(beam.DoFn):
  """``FileMetadata`` -> :class:`TilePair`, or a dead letter (tag ``dead``)."""

  def __init__(self, mask_template: Optional[str], output_dir: Optional[str] = None):
    self._template = mask_template
    self._output = output_dir

  def process(self, meta) -> Iterator:
    counters.inc("matched")
    try:
      yield from self._pair(meta)
    except Exception as e:  # pylint: disable=broad-except
      yield beam.pvalue.TaggedOutput(DEAD, DeadLetter(meta.path, "match", f"{type(e).__name__}: {e}"))

  def _pair(self, meta) -> Iterator:
    path = meta.path
    stem, ext = split_ext(path)
    if ext.lower() not in IMAGE_EXTS:
      yield beam.pvalue.TaggedOutput(
          DEAD, DeadLetter(path, "match", f"unsupported extension {ext!r}; expected one of {IMAGE_EXTS}"))
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
      if self._output and inside(mask_path, FileSystems.join(self._output, "restored")):
        yield beam.pvalue.TaggedOutput(
            DEAD,
            DeadLetter(
                path, "match", f"its mask {mask_path} lies in the output's restored/ folder, where "
                "restored tiles are written: refused so no input is overwritten"))
        return
    yield TilePair(image_path=path,
                   stem=stem,
                   mask_path=mask_path,
                   mtime=float(getattr(meta, "last_updated_in_seconds", 0.0) or 0.0),
                   size_bytes=int(meta.size_in_bytes or 0))


class FirstPerStem(beam.DoFn):
  """One input per output name, and side outputs that never collide.

  Of several images with the same file name (``x/t.tif``, ``y/t.tif``: one
  ``restored/t.tif``), the first path (sorted) wins and the others are dead
  letters. ``a.tif`` and ``a.png`` have different outputs and both stay; but
  their side outputs are named by stem (``provenance/{stem}.tif``,
  ``preview/{stem}.png``), so only the first of them (sorted by path) keeps
  its stem there, and each other is named by its file name
  (:func:`side_stems`: ``provenance/a.tif.tif``, ``preview/a.tif.png``).
  """

  def process(self, grouped):
    _, pairs = grouped
    kept = []
    for pair in sorted(pairs, key=lambda p: p.image_path):
      first = next((k for k in kept if k.name == pair.name), None)
      if first is None:
        kept.append(pair)
        continue
      counters.inc("failed_duplicate_stem")
      yield beam.pvalue.TaggedOutput(DEAD,
                                     DeadLetter(pair.image_path, "match", f"same output name as {first.image_path}"))
    yield from side_stems(kept)


def side_stems(pairs: list[TilePair]) -> list[TilePair]:
  """``pairs`` (one stem, distinct file names, sorted) with the stems their side
  outputs are named by: the first keeps its stem, each other takes its file name."""
  return [p if k == 0 else dataclasses.replace(p, stem=p.name) for k, p in enumerate(pairs)]


def _not_inside(meta, output_dir: Optional[str]) -> bool:
  if output_dir and inside(meta.path, output_dir):
    logging.getLogger(__name__).info("not an input: %s lies in the output folder", meta.path)
    return False
  return True


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
    output_dir: The run's output folder: inputs under it are not matched
      (a re-run never takes in its own outputs), and masks in its
      ``restored/`` are refused.
  """

  pattern: str
  mask_template: Optional[str] = None
  since: Optional[float] = None
  output_dir: Optional[str] = None

  def __post_init__(self):
    if self.mask_template:
      check_template(self.mask_template)

  def expand(self, pbegin):
    since, output = self.since, self.output_dir
    metas = (pbegin |
             "MatchFiles" >> fileio.MatchFiles(self.pattern, empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW) |
             "Since" >> beam.Filter(lambda m: since is None or (m.last_updated_in_seconds or 0) >= since) |
             "NotOutput" >> beam.Filter(_not_inside, output) | "Reshuffle" >> beam.Reshuffle())
    paired = metas | "Pair" >> beam.ParDo(PairWithMask(self.mask_template, output)).with_outputs(DEAD, main="pairs")
    unique = (paired.pairs | "ByStem" >> beam.Map(lambda p: (p.stem, p)) | "GroupByStem" >> beam.GroupByKey() |
              "FirstPerStem" >> beam.ParDo(FirstPerStem()).with_outputs(DEAD, main="pairs"))
    unreadable = pbegin | "Unreadable" >> beam.Create(unreadable_local_matches(self.pattern, output))
    dead = (paired[DEAD], unique[DEAD], unreadable) | "FlattenDead" >> beam.Flatten()
    return {"pairs": unique.pairs, DEAD: dead}

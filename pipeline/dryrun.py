"""``cloudfill run --dry-run``: what a run would do, input by input; writes nothing.

Each matched input is listed as ``restore``, ``skip`` (up to date, or
modified before ``--since``) or ``refuse`` (no mask, unsupported, a clashing
output name, an unreadable header, or a header that does not fit the profile
or the model; a directory, broken symlink or name Beam cannot list that the
pattern matches), with its reason. It reads headers and output tags only: no
pixel is decoded in full, the model is not loaded, no file is written.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from apache_beam.io.filesystems import FileSystems

from pipeline import preflight
from transforms.incremental import is_up_to_date
from transforms.match import IMAGE_EXTS, mask_path_for, unreadable_local_matches
from transforms import raster_open
from transforms.raster_io import SUPPORTED_DTYPES, split_ext
from transforms.records import TilePair

RESTORE, SKIP, REFUSE = "restore", "skip", "refuse"


@dataclasses.dataclass(frozen=True)
class Planned:
  """One input's fate in a dry run."""

  action: str
  path: str
  reason: str = ""


def plan(paths: Sequence[str], args, card) -> list[Planned]:
  """What ``cloudfill run`` would do with each of ``paths`` (see the module doc)."""
  expect = getattr(args, "expect", None) or {}
  metas = {m.path: m for m in FileSystems.match([args.images])[0].metadata_list}
  seen_names: dict[str, str] = {}
  seen_stems: set[str] = set()
  out = []
  for path in sorted(paths):
    meta = metas.get(path)
    mtime = float(getattr(meta, "last_updated_in_seconds", 0.0) or 0.0)
    stem, ext = split_ext(path)
    if args.since is not None and mtime < args.since:
      out.append(Planned(SKIP, path, "modified before --since"))
      continue
    if ext.lower() not in IMAGE_EXTS:
      out.append(Planned(REFUSE, path, f"unsupported extension {ext!r}"))
      continue
    mask = mask_path_for(path, args.masks) if args.masks else None
    if mask and not FileSystems.exists(mask):
      out.append(Planned(REFUSE, path, f"mask not found: {mask}"))
      continue
    # As the run (transforms.match.FirstPerStem), among the inputs paired with a mask:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    if name in seen_names:
      out.append(Planned(REFUSE, path, f"same output name as {seen_names[name]}"))
      continue
    seen_names[name] = path
    side_stem = name if stem in seen_stems else stem  # a.tif beside a.png: its side outputs by file name
    seen_stems.add(stem)
    pair = TilePair(image_path=path, stem=side_stem, mask_path=mask, mtime=mtime)
    if not args.overwrite and is_up_to_date(pair, args.output, card.version, card.weights_sha256):
      out.append(Planned(SKIP, path, f"up to date (model {card.version})"))
      continue
    if preflight.scheme(path) is None:
      try:
        header = preflight.read_header(path, args.max_pixels)
        why = preflight.check_header(header, args, card, expect)
        if not why and header.dtype not in SUPPORTED_DTYPES:
          why = f"unsupported dtype {header.dtype}; expected one of {SUPPORTED_DTYPES}"
        if not why and mask:
          h, w = header.full_shape
          # Size, pixel limit, readability; a FIFO is refused unopened (raster_open guards every read).
          raster_open.read_mask_file(mask, 0, args.max_pixels, 0, (h, w))
      except Exception as e:  # pylint: disable=broad-except
        why = f"unreadable: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
      if why:
        out.append(Planned(REFUSE, path, why))
        continue
    out.append(Planned(RESTORE, path))
  # What Beam's match drops (directories, broken symlinks, backslash names): the run dead-letters them.
  out += [Planned(REFUSE, d.path, d.reason) for d in unreadable_local_matches(args.images, args.output)]
  return sorted(out, key=lambda p: p.path)


def render(planned: Sequence[Planned]) -> str:
  """The dry run's listing, one input a line, then the counts."""
  lines = [f"{p.action:<8}{p.path}" + (f"  ({p.reason})" if p.reason else "") for p in planned]
  counts = {a: sum(p.action == a for p in planned) for a in (RESTORE, SKIP, REFUSE)}
  lines.append(f"dry run: matched {len(planned)}: would restore {counts[RESTORE]}, skip {counts[SKIP]}, "
               f"refuse {counts[REFUSE]}; nothing was written")
  return "\n".join(lines)

"""Atomic writes on any Beam filesystem (local, gs://, s3://).

A file is either absent under its final name or complete: locally it is
written to a temporary name beside it and renamed; on object storage an object
appears only when its upload completes. :func:`write_all_atomic` extends that
to files that belong together (a restored output and its provenance): written
all or, as far as the filesystem allows, none.
"""

from __future__ import annotations

import logging
import os
import uuid
from typing import Sequence

from apache_beam.io.filesystems import FileSystems


def _is_local(path: str) -> bool:
  return FileSystems.get_scheme(path) is None


def _stage_local(path: str, data: bytes) -> str:
  """``data`` written and synced to a temporary name beside ``path``; that name."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
  try:
    with open(tmp, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
  except BaseException:
    _remove_quietly(tmp)
    raise
  return tmp


def _upload(path: str, data: bytes) -> None:
  with FileSystems.create(path, mime_type="application/octet-stream", compression_type="uncompressed") as f:
    f.write(data)


def _remove_quietly(path: str) -> None:
  try:
    if _is_local(path):
      os.remove(path)
    else:
      FileSystems.delete([path])
  except FileNotFoundError:
    pass  # Never written (its open failed).
  except Exception:  # pylint: disable=broad-except
    logging.getLogger(__name__).warning("could not remove %s after a failed write", path)


def write_bytes_atomic(path: str, data: bytes) -> None:
  """Writes ``data`` so that ``path`` is either absent or complete
  (locally a temporary file, then a rename; on object storage one upload)."""
  write_all_atomic([(path, data)])


def write_all_atomic(files: Sequence[tuple[str, bytes]]) -> None:
  """Writes files that belong together: all of them, or none changed where it can be helped.

  Local files are all staged (written and synced under temporary names)
  before the first is renamed into place, so a failure while writing (disk
  full, permission) leaves every earlier version as it was. A rename that
  fails (rare: the final name is taken by a folder) leaves the files renamed
  before it in place and removes the other temporaries. Objects are
  uploaded in order; when one fails, those already uploaded in this call are
  deleted again (best effort: the earlier versions they replaced are gone, a
  missing file is better than one that describes another output).

  Raises:
    The first write's error, after the clean-up.
  """
  staged: list[tuple[str, str]] = []
  uploaded: list[str] = []
  try:
    for path, data in files:
      if _is_local(path):
        staged.append((_stage_local(path, data), path))
      else:
        _upload(path, data)
        uploaded.append(path)
  except BaseException:
    for tmp, _ in staged:
      _remove_quietly(tmp)
    for path in uploaded:
      _remove_quietly(path)
    raise
  for k, (tmp, path) in enumerate(staged):
    try:
      os.replace(tmp, path)
    except BaseException:
      for rest, _ in staged[k:]:
        _remove_quietly(rest)
      raise

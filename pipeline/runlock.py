"""One run at a time per output folder: a lock object with the run's id and an expiry.

Two runs writing into one ``--output`` would delete each other's temporary
files, spills and Beam temp folders at their ends. So a run first creates
``{output}/.cloudfill.lock``, a small JSON object (run id, host, pid, start,
expiry), and only if it did not exist:

* local folders: ``open(O_CREAT | O_EXCL)``;
* ``gs://``: an upload with the precondition ``ifGenerationMatch=0``;
* ``s3://``: a ``PutObject`` with ``If-None-Match: *``.

A second run finds the lock and refuses (exit 2, one line) unless the lock is
stale: past its expiry, or (same host) its process is gone, as after a
``SIGKILL``. The run removes its lock when its pipeline ends (the summary
step, and the launcher after a local run), and never a lock it does not hold.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import time
from typing import Any, Optional

from apache_beam.io.filesystems import FileSystems

LOCK_NAME = ".cloudfill.lock"
# A lock older than this is stale even if its process may still live
# (object storage cannot tell: a killed Dataflow job leaves its lock).
DEFAULT_TTL_S = 24 * 3600


class LockHeld(ValueError):
  """Another run holds the output's lock, or it cannot be created; the message
  says which and how to proceed (``cloudfill run`` exits 2)."""


@dataclasses.dataclass(frozen=True)
class RunLock:
  """A held lock: ``path`` and the ``run_id`` it records."""

  path: str
  run_id: str

  def release(self) -> None:
    """Removes the lock if it is still this run's (never another run's)."""
    try:
      current = _read(self.path)
      if current is not None and current.get("run_id") == self.run_id:
        _delete(self.path)
    except Exception as e:  # pylint: disable=broad-except
      logging.getLogger(__name__).warning("could not remove the run lock %s: %s", self.path, e)


def lock_path(output_dir: str) -> str:
  return FileSystems.join(output_dir, LOCK_NAME)


def _content(run_id: str, ttl_s: float) -> dict[str, Any]:
  now = time.time()
  return {"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(), "started": now, "expires": now + ttl_s}


def _read(path: str) -> Optional[dict[str, Any]]:
  try:
    if FileSystems.get_scheme(path) is None:
      with open(path, "rb") as f:
        data = f.read()
    else:
      if not FileSystems.exists(path):
        return None
      with FileSystems.open(path, compression_type="uncompressed") as f:
        data = f.read()
  except FileNotFoundError:
    return None
  try:
    return json.loads(data.decode("utf-8"))
  except (ValueError, UnicodeDecodeError):
    return {}  # Unreadable: treated as stale.


def _delete(path: str) -> None:
  if FileSystems.get_scheme(path) is None:
    try:
      os.remove(path)
    except FileNotFoundError:
      pass
  else:
    FileSystems.delete([path])


def _create_exclusive(path: str, body: bytes, options=None) -> bool:
  """Creates ``path`` with ``body`` only if absent; False when it exists."""
  scheme = FileSystems.get_scheme(path)
  if scheme is None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
      fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
      return False
    with os.fdopen(fd, "wb") as f:
      f.write(body)
    return True
  if scheme == "gs":
    return _create_gcs(path, body, options)
  if scheme == "s3":
    return _create_s3(path, body, options)
  raise ValueError(f"no run lock for {scheme}:// outputs")


def _create_gcs(path: str, body: bytes, options) -> bool:
  from apache_beam.io.gcp import gcsio  # pylint: disable=import-outside-toplevel
  from google.api_core import exceptions  # pylint: disable=import-outside-toplevel
  bucket, name = gcsio.parse_gcs_path(path)
  client = gcsio.GcsIO(pipeline_options=options).client
  try:
    client.bucket(bucket).blob(name).upload_from_string(body, if_generation_match=0)
  except exceptions.PreconditionFailed:
    return False
  return True


def _create_s3(path: str, body: bytes, options) -> bool:
  from apache_beam.io.aws import s3io  # pylint: disable=import-outside-toplevel
  bucket, name = s3io.parse_s3_path(path)
  client = s3io.S3IO(options=options).client.client  # boto3
  try:
    client.put_object(Bucket=bucket, Key=name, Body=body, IfNoneMatch="*")
  except Exception as e:  # pylint: disable=broad-except
    code = getattr(e, "response", {}).get("Error", {}).get("Code", "")
    if code in ("PreconditionFailed", "ConditionalRequestConflict", "412"):
      return False
    raise
  return True


def _stale(holder: dict[str, Any]) -> Optional[str]:
  """Why ``holder``'s lock is stale, or None while it is live."""
  if not holder:
    return "unreadable"
  if holder.get("expires", 0) < time.time():
    return "expired"
  if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
    try:
      os.kill(holder["pid"], 0)
    except ProcessLookupError:
      return f"its process {holder['pid']} is gone"
    except PermissionError:
      return None
  return None


def acquire(output_dir: str, run_id: str, options=None, ttl_s: float = DEFAULT_TTL_S) -> RunLock:
  """Takes the output's lock for ``run_id``.

  Raises:
    LockHeld: another live run holds it, or it cannot be read or created
      (e.g. ``--output`` is a file, read-only, or the store refuses).
  """
  try:
    return _acquire(output_dir, run_id, options, ttl_s)
  except LockHeld:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise LockHeld(f"cannot create the run lock {lock_path(output_dir)}: {type(e).__name__}: {e}") from e


def _acquire(output_dir: str, run_id: str, options, ttl_s: float) -> RunLock:
  path = lock_path(output_dir)
  body = json.dumps(_content(run_id, ttl_s)).encode()
  for _ in range(3):
    holder = _read(path)  # Looked at first: a storage without preconditions still sees a live lock.
    if holder is not None:
      why = _stale(holder)
      if why is None:
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(holder.get("started", 0)))
        raise LockHeld(f"another run ({holder.get('run_id')}, pid {holder.get('pid')} on "
                       f"{holder.get('host')}, started {started}) is writing into {output_dir}; "
                       f"wait for it, or remove {path} if that run is dead")
      logging.getLogger(__name__).warning("taking over the stale run lock %s (%s)", path, why)
      if (_read(path) or {}).get("run_id") == holder.get("run_id"):  # Not taken over meanwhile.
        _delete(path)
      continue
    if _create_exclusive(path, body, options):
      return RunLock(path=path, run_id=run_id)
  raise LockHeld(f"could not take the run lock {path}: other runs keep taking it")

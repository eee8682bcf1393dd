"""The console of ``cloudfill run``: start-up noise filtered, a progress line.

:class:`NoiseFilter` puts a pipe in front of file descriptor 2 for the run, so
that what TensorFlow's C++ runtime, absl and Beam print at start-up (the
doubled oneDNN banner, ``failed call to cuInit``, "Resource module is not
available", "No shards found to finalize", LiteRT's "Created TensorFlow Lite
XNNPACK delegate") is dropped while every other line passes unchanged.
``cloudfill run -vv`` turns it off; ``serve``, ``train`` and ``export`` run
behind it too, unless ``TF_CPP_MIN_LOG_LEVEL=0`` asks for that chatter.

:class:`Progress` prints ``restored N of M inputs, R/s, ETA`` while a run is
going, from the outputs appearing in ``DIR/restored/`` (local output only),
once the run has lasted a few seconds.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from typing import Optional

NOISE = re.compile(r"All log messages before absl::InitializeLog|^[IW]\d{4} [\d:. ]+\s+\d+ \S+\.(cc|h):\d+\]"
                   r"|failed call to cuInit|cuda_(platform|executor|diagnostics)|oneDNN custom operations"
                   r"|Resource module is not available|No shards found to finalize"
                   r"|This TensorFlow binary is optimized|rebuild TensorFlow with the appropriate compiler flags"
                   r"|^INFO: Created TensorFlow Lite XNNPACK delegate for CPU")


class NoiseFilter:
  """Context manager: drops known start-up noise from file descriptor 2."""

  def __init__(self, enabled: bool = True):
    self._enabled = enabled
    self._saved: Optional[int] = None
    self._thread: Optional[threading.Thread] = None
    self.dropped = 0

  def __enter__(self):
    if not self._enabled:
      return self
    try:
      sys.stderr.flush()
      self._saved = os.dup(2)
      read, write = os.pipe()
      os.dup2(write, 2)
      os.close(write)
    except OSError:
      self._saved = None
      return self
    self._thread = threading.Thread(target=self._pump, args=(read,), daemon=True)
    self._thread.start()
    return self

  def _pump(self, read: int) -> None:
    with os.fdopen(read, "rb") as src:
      for line in src:
        if NOISE.search(line.decode("utf-8", "replace")):
          self.dropped += 1
          continue
        try:
          os.write(self._saved, line)
        except OSError:
          pass

  def __exit__(self, *exc):
    if self._saved is None:
      return False
    try:
      sys.stderr.flush()
    except (OSError, ValueError):
      pass
    os.dup2(self._saved, 2)  # Closes our pipe's last write end in this process.
    if self._thread:
      self._thread.join(timeout=2)
    os.close(self._saved)
    self._saved = None
    return False


def _fmt_seconds(s: float) -> str:
  s = int(round(s))
  return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def progress_text(done: int, total: int, elapsed: float) -> str:
  """``restored 12 of 40 inputs, 1.5/s, ETA 0m19s``."""
  rate = done / elapsed if elapsed > 0 else 0.0
  text = f"restored {done} of {total} inputs, {rate:.2f}/s"
  if 0 < done < total and rate > 0:
    text += f", ETA {_fmt_seconds((total - done) / rate)}"
  return text


class Progress:
  """Context manager: a progress line on stderr while a run is going.

  Attributes:
    restored_dir: The local folder restored outputs appear in.
    total: How many inputs were matched.
    after: Seconds before the first line (short runs print none).
    every: Seconds between lines when stderr is not a terminal.
  """

  def __init__(self,
               restored_dir: Optional[str],
               total: int,
               enabled: bool = True,
               after: float = 5.0,
               every: float = 10.0):
    self.restored_dir = restored_dir
    self.total = total
    self.after, self.every = after, every
    self._enabled = enabled and restored_dir is not None and total > 0
    self._stop = threading.Event()
    self._thread: Optional[threading.Thread] = None
    self._start = time.time()
    self.lines = 0

  def count(self) -> int:
    try:
      with os.scandir(self.restored_dir) as it:
        return sum(1 for e in it if not e.name.startswith(".") and e.stat().st_mtime >= self._start - 1)
    except OSError:
      return 0

  def __enter__(self):
    self._start = time.time()
    if self._enabled:
      self._thread = threading.Thread(target=self._loop, daemon=True)
      self._thread.start()
    return self

  def _loop(self) -> None:
    tty = sys.stderr.isatty()
    if self._stop.wait(self.after):
      return
    while True:
      text = progress_text(self.count(), self.total, time.time() - self._start)
      sys.stderr.write(("\r" + text + "   ") if tty else (text + "\n"))
      sys.stderr.flush()
      self.lines += 1
      if self._stop.wait(1.0 if tty else self.every):
        break
    if tty:
      sys.stderr.write("\n")

  def __exit__(self, *exc):
    self._stop.set()
    if self._thread:
      self._thread.join(timeout=2)
    return False

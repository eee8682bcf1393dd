"""Beam counters and distributions in the ``cloudfill`` namespace."""

from __future__ import annotations

import contextlib
import functools
import threading
from typing import Iterator

from apache_beam.metrics import Metrics

NAMESPACE = "cloudfill"
# Beam's metrics live in a per-thread container: updates made on another thread
# (transforms.pooled) are captured there and replayed on the DoFn's own thread.
_local = threading.local()


@functools.lru_cache(maxsize=None)
def _counter(name: str):
  return Metrics.counter(NAMESPACE, name)


@functools.lru_cache(maxsize=None)
def _distribution(name: str):
  return Metrics.distribution(NAMESPACE, name)


def inc(name: str, n: int = 1) -> None:
  """Adds ``n`` to the counter ``cloudfill:name``."""
  events = getattr(_local, "events", None)
  if events is not None:
    events.append(("inc", name, n))
    return
  _counter(name).inc(n)


def record(name: str, value: float) -> None:
  """Records an integer ``value`` into the distribution ``cloudfill:name``.

  Beam distributions hold integers: pass milliseconds or per-mille values.
  """
  events = getattr(_local, "events", None)
  if events is not None:
    events.append(("record", name, value))
    return
  _distribution(name).update(int(value))


@contextlib.contextmanager
def captured() -> Iterator[list[tuple[str, str, float]]]:
  """Within it, this thread's :func:`inc` and :func:`record` are kept in the
  yielded list (``(kind, name, value)``) instead of reaching Beam; see :func:`replay`."""
  events: list[tuple[str, str, float]] = []
  outer = getattr(_local, "events", None)
  _local.events = events
  try:
    yield events
  finally:
    _local.events = outer


def replay(events: list[tuple[str, str, float]]) -> None:
  """Applies captured updates (:func:`captured`) on the calling thread."""
  for kind, name, value in events:
    (inc if kind == "inc" else record)(name, value)

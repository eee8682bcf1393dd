"""Beam counters and distributions in the ``cloudfill`` namespace."""

from __future__ import annotations

import functools

from apache_beam.metrics import Metrics

NAMESPACE = "cloudfill"


@functools.lru_cache(maxsize=None)
def _counter(name: str):
  return Metrics.counter(NAMESPACE, name)


@functools.lru_cache(maxsize=None)
def _distribution(name: str):
  return Metrics.distribution(NAMESPACE, name)


def inc(name: str, n: int = 1) -> None:
  """Adds ``n`` to the counter ``cloudfill:name``."""
  _counter(name).inc(n)


def record(name: str, value: float) -> None:
  """Records an integer ``value`` into the distribution ``cloudfill:name``.

  Beam distributions hold integers: pass milliseconds or per-mille values.
  """
  _distribution(name).update(int(value))

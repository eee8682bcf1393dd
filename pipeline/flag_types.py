"""The converters of ``cloudfill run``'s flag values (argparse ``type=``), also
applied to the same keys in profiles (:mod:`pipeline.options`). Each raises
``argparse.ArgumentTypeError`` with a one-line message."""

from __future__ import annotations

import argparse
import datetime as dt
import math


def _pixels_text(n: int) -> str:
  """``4194304 = 2048x2048`` for a square number of pixels."""
  side = math.isqrt(n)
  return f"{n} = {side}x{side}" if side * side == n else str(n)


def _int_list(text: str) -> list[int]:
  try:
    return [int(t) for t in str(text).split(",") if t.strip()]
  except ValueError as e:
    raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from e


def _bands(text: str) -> list[int]:
  out = _int_list(text)
  if not out or min(out) < 1:
    raise argparse.ArgumentTypeError(f"bands are 1-based positive integers, got {text!r}")
  return out


def _bits(text: str) -> list[int]:
  out = _int_list(text)
  if not out or not all(0 <= b < 64 for b in out):
    raise argparse.ArgumentTypeError(f"bits are 0…63, got {text!r}")
  return out


def _range(text: str) -> tuple[float, float]:
  parts = str(text).split(",")
  try:
    lo, hi = (float(v) for v in parts)
  except ValueError as e:
    raise argparse.ArgumentTypeError(f"expected LO,HI, got {text!r}") from e
  if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
    raise argparse.ArgumentTypeError(f"expected finite LO < HI, got {text!r}")
  return lo, hi


def _finite(text: str) -> float:
  try:
    value = float(text)
  except ValueError as e:
    raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from e
  if not math.isfinite(value):
    raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
  return value


def _nodata(text: str) -> float:
  try:
    return float(text)  # NaN is a legitimate no-data value.
  except ValueError as e:
    raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from e


def _distance(text: str) -> float:
  """A finite distance in pixels, >= 0."""
  v = _finite(text)
  if v < 0:
    raise argparse.ArgumentTypeError(f"expected a distance >= 0, got {text!r}")
  return v


def _count(text: str) -> int:
  try:
    value = int(text)
  except ValueError as e:
    raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from e
  if value < 0:
    raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
  return value


def _positive(text: str) -> int:
  """An integer >= 1 (batch sizes, model copies)."""
  value = _count(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
  return value


def _creation_option(text: str) -> str:
  name, sep, value = str(text).partition("=")
  if not sep or not name.strip() or not value.strip():
    raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
  return f"{name.strip().upper()}={value.strip()}"


def _date(text: str) -> str:
  dt.date.fromisoformat(text)
  return text


def _since(text: str) -> float:
  try:
    return float(text)
  except ValueError:
    return dt.datetime.fromisoformat(text).replace(
        tzinfo=dt.datetime.fromisoformat(text).tzinfo or dt.timezone.utc).timestamp()

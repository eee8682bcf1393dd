"""An order-keeping thread map for numpy work that releases the GIL.

The guided fill of a streamed scene's window (:func:`transforms.regression.guided_fill`:
box sums, ``einsum``, batched solves) spends nearly all its time in numpy,
which releases the GIL: two threads run two windows' fills in about half the
time of one on an idle 2-core machine (0.43 → 0.21 s a 256² window; 0.26 →
0.19 s under load: ``python -m benchmarks.threads``; outputs equal). Reading
the guide (GDAL) stays in the caller's thread: a rasterio dataset is not
shared between threads.
"""

from __future__ import annotations

import collections
import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# More threads than this buy nothing on the machines we run on (a Dataflow
# worker's cores are shared with the model's own thread pool).
MAX_THREADS = 4

# This process's thread budget, when its runner set one (limit_threads).
_budget: dict[str, int] = {}


def available_cores() -> int:
  """The cores this process may run on (its CPU affinity, else the machine's)."""
  if hasattr(os, "sched_getaffinity"):
    return len(os.sched_getaffinity(0))
  return os.cpu_count() or 1


def default_threads() -> int:
  """Threads for :func:`ordered_map`: the available cores, at most
  :data:`MAX_THREADS`, and at most this process's budget (:func:`limit_threads`)."""
  return max(1, min(MAX_THREADS, available_cores(), _budget.get("threads", MAX_THREADS)))


def limit_threads(threads: int) -> None:
  """Caps :func:`default_threads` in this process: a worker process that shares
  the machine's cores with others (cores ÷ workers), or one per vCPU (1)."""
  _budget["threads"] = max(1, int(threads))


def ordered_map(fn: Callable[[T], R], items: Iterable[T], threads: int, ahead: int = 0) -> Iterator[R]:
  """``map(fn, items)`` on ``threads`` threads, results in the items' order.

  Items are drawn from ``items`` in the caller's thread (so an iterator that
  reads files stays single-threaded), at most ``ahead`` (default
  ``2 × threads``) beyond the last result yielded: memory stays bounded
  however long ``items`` is. An exception in ``fn`` is raised here, at that
  item's turn; pending work is cancelled when the caller stops early.
  ``threads <= 1`` is plain ``map``, in the caller's thread.
  """
  if threads <= 1:
    yield from map(fn, items)
    return
  ahead = max(1, ahead or 2 * threads)
  pool = ThreadPoolExecutor(threads, thread_name_prefix="cloudfill-fill")
  pending: collections.deque[Future] = collections.deque()
  try:
    for item in items:
      pending.append(pool.submit(fn, item))
      if len(pending) >= ahead:
        yield pending.popleft().result()
    while pending:
      yield pending.popleft().result()
  finally:
    pool.shutdown(wait=True, cancel_futures=True)

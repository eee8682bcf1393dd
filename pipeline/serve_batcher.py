"""Micro-batching: windows of concurrent requests share model calls.

Each request thread calls :meth:`MicroBatcher.predict` with its windows and
blocks; one worker thread gathers the windows waiting in the queue (until
``max_batch`` windows or ``max_wait_s`` after the first one arrived), makes one
model call, and hands each request its rows back. The model is loaded once and
only the worker calls it, so TensorFlow sees one call at a time.

A request alone gets exactly the batches it asked for (the engine's chunks of
``max_batch``), the same as the pipeline's ``RunInference`` on one tile.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from concurrent.futures import Future
from typing import Callable, Optional

import numpy as np

Model = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclasses.dataclass
class _Job:
  images: np.ndarray  # [n, S, S, C] float32
  masks: np.ndarray   # [n, S, S, 1] float32
  future: Future


@dataclasses.dataclass
class BatchStats:
  """What the worker did: model calls, windows, and seconds inside the model."""

  calls: int = 0
  windows: int = 0
  model_seconds: float = 0.0
  largest_batch: int = 0


class MicroBatcher:
  """Gathers windows from many threads into shared model calls.

  Args:
    model: ``model(images [N,S,S,C], masks [N,S,S,1]) -> [N,S,S,C]``.
    max_batch: Most windows in one model call.
    max_wait_s: How long the first waiting window waits for company.
  """

  def __init__(self, model: Model, max_batch: int = 16, max_wait_s: float = 0.005):
    if max_batch < 1 or max_wait_s < 0:
      raise ValueError("max_batch must be >= 1 and max_wait_s >= 0")
    self._model = model
    self._max_batch = max_batch
    self._max_wait = max_wait_s
    self._queue: "queue.Queue[Optional[_Job]]" = queue.Queue()
    self.stats = BatchStats()
    self._worker = threading.Thread(target=self._run, name="cloudfill-batcher", daemon=True)
    self._worker.start()

  def predict(self, images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Blocks until the model has restored these windows; same shape as ``images``."""
    if not self._worker.is_alive():
      raise RuntimeError("the batcher is closed")
    job = _Job(images, masks, Future())
    self._queue.put(job)
    return job.future.result()

  __call__ = predict

  def pending(self) -> int:
    return self._queue.qsize()

  def close(self) -> None:
    self._queue.put(None)
    self._worker.join(timeout=30)

  def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
    """Jobs for one call (whole jobs, at most ``max_batch`` windows unless a
    single job is larger), and whether the queue was closed meanwhile."""
    jobs, n = [first], len(first.images)
    deadline = time.monotonic() + self._max_wait
    while n < self._max_batch:
      left = deadline - time.monotonic()
      try:
        job = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
      except queue.Empty:
        break
      if job is None:
        return jobs, True
      if n + len(job.images) > self._max_batch:
        self._carry = job  # Starts the next call.
        break
      jobs.append(job)
      n += len(job.images)
    return jobs, False

  def _run(self) -> None:
    self._carry: Optional[_Job] = None
    closed = False
    while not closed:
      first = self._carry or self._queue.get()
      self._carry = None
      if first is None:
        break
      jobs, closed = self._gather(first)
      self._call(jobs)
    if self._carry is not None:
      self._call([self._carry])

  def _call(self, jobs: list[_Job]) -> None:
    images = np.concatenate([j.images for j in jobs])
    masks = np.concatenate([j.masks for j in jobs])
    start = time.perf_counter()
    try:
      out = np.asarray(self._model(images, masks))
    except Exception as e:  # pylint: disable=broad-except
      for j in jobs:
        j.future.set_exception(e)
      return
    self.stats.calls += 1
    self.stats.windows += len(images)
    self.stats.model_seconds += time.perf_counter() - start
    self.stats.largest_batch = max(self.stats.largest_batch, len(images))
    i = 0
    for j in jobs:
      j.future.set_result(out[i:i + len(j.images)])
      i += len(j.images)

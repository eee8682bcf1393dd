"""Micro-batching: windows of concurrent requests share model calls.

Each request thread calls :meth:`MicroBatcher.predict` with its windows and
blocks; one worker thread gathers the windows waiting in the queue (until
``max_batch`` windows or ``max_wait_s`` after the first one arrived), makes one
model call, and hands each request its rows back. A request with more windows
than a call has room for is split across calls. The model is loaded once and
only the worker calls it, so TensorFlow sees one call at a time.

A request alone gets exactly the batches it asked for (the engine's chunks of
``max_batch``), the same as the pipeline's ``RunInference`` on one tile, so its
bytes match ``cloudfill run``'s. Under load, a window may share a call with
other requests' windows; a model whose per-window result depends on the batch
(floating-point sums in a different order) may then differ in the last bit.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from concurrent.futures import Future
from typing import Callable, Optional

import numpy as np

# ``model(images, masks, **extra)``, e.g. :class:`model_loader.native.LoadedModel`.
Model = Callable[..., np.ndarray]


class _Job:
  """One caller's windows, filled in as the model returns their rows."""

  def __init__(self, images: np.ndarray, masks: np.ndarray, extra: dict[str, np.ndarray]):
    self.images, self.masks = images, masks  # [n, S, S, C], [n, S, S, 1] float32
    self.extra = extra  # context, guide, guide_mask: [n, S, S, *] float32
    self.out: Optional[np.ndarray] = None
    self.taken = 0  # Rows handed to model calls so far.
    self.done = 0  # Rows returned.
    self.future: Future = Future()

  def __len__(self) -> int:
    return len(self.images)


@dataclasses.dataclass
class BatchStats:
  """What the worker did: model calls, windows, seconds inside the model, and
  calls that served more than one request."""

  calls: int = 0
  windows: int = 0
  model_seconds: float = 0.0
  largest_batch: int = 0
  shared_calls: int = 0


class MicroBatcher:
  """Gathers windows from many threads into shared model calls.

  Args:
    model: ``model(images [N,S,S,C], masks [N,S,S,1]) -> [N,S,S,C]``.
    max_batch: Most windows in one model call.
    max_wait_s: How long the first waiting window waits for company.
    share: Put windows of different requests into one call. False: each call
      holds one request's windows only, so every answer is byte-identical to
      the same tile restored alone, whatever the load.
  """

  def __init__(self, model: Model, max_batch: int = 16, max_wait_s: float = 0.005, share: bool = True):
    if max_batch < 1 or max_wait_s < 0:
      raise ValueError("max_batch must be >= 1 and max_wait_s >= 0")
    self._model = model
    self._max_batch = max_batch
    self._max_wait = max_wait_s
    self._share = share
    self._queue: "queue.Queue[Optional[_Job]]" = queue.Queue()
    self.stats = BatchStats()
    self._worker = threading.Thread(target=self._run, name="cloudfill-batcher", daemon=True)
    self._worker.start()

  def predict(self, images: np.ndarray, masks: np.ndarray, **extra: np.ndarray) -> np.ndarray:
    """Blocks until the model has restored these windows; same shape as
    ``images``. ``extra``: the model's other inputs (``context``, ``guide``,
    ``guide_mask``), one row per window."""
    if not self._worker.is_alive():
      raise RuntimeError("the batcher is closed")
    job = _Job(images, masks, {k: v for k, v in extra.items() if v is not None})
    self._queue.put(job)
    return job.future.result()

  __call__ = predict

  def pending(self) -> int:
    return self._queue.qsize()

  def close(self) -> None:
    self._queue.put(None)
    self._worker.join(timeout=30)

  def _gather(self) -> tuple[list[tuple[_Job, int, int]], bool]:
    """Rows for one call, ``(job, start, end)``, at most ``max_batch`` of them,
    and whether the batcher was closed meanwhile. A job larger than what is
    left of a call is split; its rest starts the next call."""
    parts: list[tuple[_Job, int, int]] = []
    n, deadline, closed = 0, None, False
    while n < self._max_batch:
      job = self._current
      if job is None:
        if parts and not self._share:
          break
        try:
          if deadline is None:
            job = self._queue.get()
            deadline = time.monotonic() + self._max_wait
          else:
            left = deadline - time.monotonic()
            job = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
        except queue.Empty:
          break
        if job is None:
          closed = True
          break
        self._current = job
      deadline = deadline or time.monotonic() + self._max_wait
      take = min(len(job) - job.taken, self._max_batch - n)
      parts.append((job, job.taken, job.taken + take))
      job.taken += take
      n += take
      if job.taken == len(job):
        self._current = None
    return parts, closed

  def _run(self) -> None:
    self._current: Optional[_Job] = None
    closed = False
    while not closed or self._current is not None:
      parts, closed = self._gather()
      if parts:
        self._call(parts)

  def _call(self, parts: list[tuple[_Job, int, int]]) -> None:
    images = np.concatenate([j.images[a:b] for j, a, b in parts])
    masks = np.concatenate([j.masks[a:b] for j, a, b in parts])
    names = set.intersection(*[set(j.extra) for j, _, _ in parts])
    extra = {k: np.concatenate([j.extra[k][a:b] for j, a, b in parts]) for k in sorted(names)}
    start = time.perf_counter()
    try:
      out = np.asarray(self._model(images, masks, **extra))
      if out.shape[0] != images.shape[0]:
        raise ValueError(f"the model returned {out.shape[0]} rows for {images.shape[0]}")
    except Exception as e:  # pylint: disable=broad-except
      for j, _, _ in parts:
        if not j.future.done():
          j.future.set_exception(e)
      return
    self.stats.calls += 1
    self.stats.windows += len(images)
    self.stats.model_seconds += time.perf_counter() - start
    self.stats.largest_batch = max(self.stats.largest_batch, len(images))
    self.stats.shared_calls += len({id(j) for j, _, _ in parts}) > 1
    i = 0
    for j, a, b in parts:
      if j.out is None:
        j.out = np.empty((len(j),) + out.shape[1:], out.dtype)
      j.out[a:b] = out[i:i + b - a]
      i += b - a
      j.done += b - a
      if j.done == len(j) and not j.future.done():
        j.future.set_result(j.out)

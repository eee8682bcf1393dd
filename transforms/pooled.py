"""DoFns whose per-element work runs on a small thread pool.

On the DirectRunner's in-process mode one bundle runs at a time, element by
element: while the model infers a batch on both cores' threads, nothing else
runs, and while a tile is decoded, its context drawn, its output encoded and
written, the model waits. Those steps are numpy, GDAL and zlib work that
releases the GIL, so a :class:`PooledDoFn` hands each element's work to
:func:`transforms.parallel.default_threads` threads and goes on with the next
element; finished outputs are emitted as they come, in the elements' order,
and the rest at the end of the bundle. Beam's own metrics live on the DoFn's
thread: counters updated in the work are captured there and replayed here
(:func:`transforms.counters.captured`).

Each element's work also records the CPU time it took on its thread into the
distribution ``cloudfill:cpu_us_{step}`` (microseconds; ``step`` is the
subclass's :attr:`PooledDoFn.STEP`): where a run's cores went, step by step,
outside the model (the speed benchmark prints it; Dataflow shows it with the
job's other metrics).

Measured outside Beam (``python -m benchmarks.threads``, 64 tiles, 2 cores):
the steps around the model overlapped with its batches raised 8.5–9.0 to
9.9–11.2 tiles/s, against 13.4–14.0 for the model alone.
"""

from __future__ import annotations

import collections
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, Optional

import apache_beam as beam
import numpy as np
from apache_beam.utils.windowed_value import WindowedValue

from model_loader import native
from transforms import counters, parallel

# Elements in flight per DoFn instance, beyond the threads' own: enough to keep
# them busy, few enough that held tiles stay a few MB each.
AHEAD = 2
# Only small elements go to the pool (see small_tile, small_file), so that the
# elements in flight (AHEAD + threads per DoFn, five DoFns) stay a few MB each:
# a 512² tile of 4 float32 bands is 4 MB an array. Larger tiles and streamed
# scenes, which hold whole-scene masks while decoded and prepared, run inline.
POOL_MAX_PIXELS = 512 * 512
POOL_MAX_BYTES = 4 << 20


def small_tile(tile) -> bool:
  """An in-memory tile of at most :data:`POOL_MAX_PIXELS` (a streamed scene never is)."""
  mask = getattr(tile, "mask", None)  # A SceneRef's is a method that unpacks it.
  return isinstance(mask, np.ndarray) and mask.size <= POOL_MAX_PIXELS


def small_file(size_bytes: int) -> bool:
  """An input file of at most :data:`POOL_MAX_BYTES` (0: size unknown, not small)."""
  return 0 < size_bytes <= POOL_MAX_BYTES


class PooledDoFn(beam.DoFn):
  """A DoFn that runs ``work(element, …) -> outputs`` on a thread pool.

  Subclasses call :meth:`pooled` from ``process`` (``on_pool=False`` for
  elements that must stay on this thread, e.g. a streamed scene read lazily)
  and must call ``super()`` from any ``setup``, ``start_bundle``,
  ``finish_bundle`` and ``teardown`` they define. The work must not modify
  shared state: it receives the element and returns a list of outputs (values
  or :class:`beam.pvalue.TaggedOutput`).

  Attributes:
    STEP: The step's name in its CPU-time distribution (``cpu_us_{STEP}``).
    threads: Threads of the pool (None: :func:`parallel.default_threads`;
      1: no pool, work runs inline).
  """

  STEP = "step"

  def __init__(self, threads: Optional[int] = None):
    self.threads = threads
    self._pool: Optional[ThreadPoolExecutor] = None
    self._pending: collections.deque = collections.deque()

  def __getstate__(self):
    state = dict(self.__dict__)
    state["_pool"], state["_pending"] = None, collections.deque()
    return state

  def setup(self):
    if self.threads is not None:  # The runner's budget for this process: ordered_map's too.
      parallel.limit_threads(self.threads)
    n = parallel.default_threads() if self.threads is None else self.threads
    self._pool = ThreadPoolExecutor(n, thread_name_prefix="cloudfill-dofn") if n > 1 else None
    self._limit = AHEAD + n

  def start_bundle(self):
    self._pending = collections.deque()

  def pooled(self,
             work: Callable[..., Iterable[Any]],
             args: tuple,
             window,
             timestamp,
             on_pool: bool = True) -> Iterator[Any]:
    """Runs ``work(*args)`` on the pool; yields the outputs of earlier
    elements that are ready (all of them while too many are in flight).
    With ``on_pool=False`` (an element too large to hold several of), or
    without a pool, the work runs here and its outputs are yielded as it goes."""
    if self._pool is None or not on_pool:
      yield from _timed(work(*args), self.STEP)
      return
    self._pending.append((self._pool.submit(_captured, work, args, self.STEP), window, timestamp))
    yield from self._ready(block=False)

  def _ready(self, block: bool) -> Iterator[Any]:
    while self._pending and (block or len(self._pending) > self._limit or self._pending[0][0].done()):
      future, window, timestamp = self._pending.popleft()
      outputs, events = future.result()
      counters.replay(events)
      for out in outputs:
        if isinstance(out, beam.pvalue.TaggedOutput):
          yield beam.pvalue.TaggedOutput(out.tag, WindowedValue(out.value, timestamp, (window,)))
        else:
          yield WindowedValue(out, timestamp, (window,))

  def finish_bundle(self):
    yield from self._ready(block=True)

  def teardown(self):
    if self._pool is not None:
      self._pool.shutdown(wait=True, cancel_futures=True)
      self._pool = None


def cpu_metric(step: str) -> str:
  """The distribution of a step's CPU microseconds per element."""
  return f"cpu_us_{step}"


def _captured(work: Callable[..., Iterable[Any]], args: tuple, step: str) -> tuple[list, list]:
  """``work(*args)``'s outputs (a list) and the counters it updated, its CPU time among them."""
  with counters.captured() as events:
    start = time.thread_time()
    outputs = list(work(*args))
    counters.record(cpu_metric(step), 1e6 * (time.thread_time() - start))
  return outputs, events


def _timed(outputs: Iterable[Any], step: str) -> Iterator[Any]:
  """``outputs`` as they come, recording the CPU time spent making them
  (not the time their consumers downstream spend between two of them)."""
  it, spent = iter(outputs), 0.0
  while True:
    start = time.thread_time()
    try:
      out = next(it)
    except StopIteration:
      spent += time.thread_time() - start
      break
    spent += time.thread_time() - start
    yield out
  counters.record(cpu_metric(step), 1e6 * spent)


def local_worker_threads(pipeline) -> int:
  """TensorFlow threads per worker when the DirectRunner runs several worker
  processes on this machine (``--direct_running_mode=multi_processing``):
  cores ÷ workers, else 0 (TensorFlow's default: every core).

  Each worker's TensorFlow otherwise takes every core, and the workers'
  models fight over them while none decodes or writes.
  """
  from apache_beam.options.pipeline_options import DirectOptions  # pylint: disable=import-outside-toplevel
  options = getattr(pipeline, "_options", None)
  if options is None:
    return 0
  direct = options.view_as(DirectOptions)
  if direct.direct_running_mode != "multi_processing":
    return 0
  workers = direct.direct_num_workers
  if workers == 0:  # Beam's "as many as the machine has cores".
    import os  # pylint: disable=import-outside-toplevel
    workers = os.cpu_count() or 1
  if not workers or workers < 2:
    return 0
  return native.threads_per_worker(workers)


def pool_threads(pipeline) -> Optional[int]:
  """A :class:`PooledDoFn`'s threads in ``pipeline``.

  On the DirectRunner: cores ÷ workers when it runs several worker processes
  here (each with its own pool), else None (:func:`parallel.default_threads`).
  On any other runner 1 (no pool): Dataflow already runs an SDK process per
  vCPU, each with several bundles at once.
  """
  from apache_beam.options.pipeline_options import StandardOptions  # pylint: disable=import-outside-toplevel
  options = getattr(pipeline, "_options", None)
  runner = None if options is None else options.view_as(StandardOptions).runner
  name = runner if isinstance(runner, (str, type(None))) else type(runner).__name__
  if name not in (None, "DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner", "FnApiRunner"):
    return 1
  return local_worker_threads(pipeline) or None


WINDOW, TIMESTAMP = beam.DoFn.WindowParam, beam.DoFn.TimestampParam
"""Defaults for ``process``'s ``window`` and ``timestamp`` parameters."""

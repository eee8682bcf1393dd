"""transforms.pooled.PooledDoFn on the DirectRunner: nothing lost, counters kept, work on the pool, bounded."""

from __future__ import annotations

import threading
import time
import types

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms import counters, parallel, pooled
from transforms.pooled import (POOL_MAX_BYTES, POOL_MAX_PIXELS, TIMESTAMP, WINDOW, PooledDoFn, small_file, small_tile)

_SEEN: dict[str, set] = {}


@pytest.fixture(autouse=True)
def no_thread_budget_left_behind():
  """A DoFn given its threads sets the process's budget (parallel.limit_threads): reset it."""
  yield
  parallel._budget.clear()  # pylint: disable=protected-access


_IN_FLIGHT = {"now": 0, "max": 0}
_LOCK = threading.Lock()


class Square(PooledDoFn):
  """Squares even numbers, dead-letters odd ones; counts both; notes its threads."""

  def __init__(self, run: str, threads=None):
    super().__init__(threads)
    self._run = run

  def process(self, n, window=WINDOW, timestamp=TIMESTAMP):
    yield from self.pooled(self._work, (n,), window, timestamp)

  def _work(self, n):
    with _LOCK:
      _SEEN.setdefault(self._run, set()).add(threading.current_thread().name)
      _IN_FLIGHT["now"] += 1
      _IN_FLIGHT["max"] = max(_IN_FLIGHT["max"], _IN_FLIGHT["now"])
    time.sleep(0.002 * (n % 5))  # finish out of order
    with _LOCK:
      _IN_FLIGHT["now"] -= 1
    if n % 2:
      counters.inc("pooled_test_odd")
      return [beam.pvalue.TaggedOutput("dead", n)]
    counters.inc("pooled_test_even")
    counters.record("pooled_test_value", n)
    return [n * n]


def _run(run: str, threads, n: int = 200):
  p = TestPipeline(runner="DirectRunner")
  out = p | beam.Create(list(range(n))) | beam.ParDo(Square(run, threads)).with_outputs("dead", main="main")
  assert_that(out.main, equal_to([i * i for i in range(0, n, 2)]), label="main")
  assert_that(out.dead, equal_to(list(range(1, n, 2))), label="dead")
  result = p.run()
  result.wait_until_finish()
  q = result.metrics().query(MetricsFilter().with_namespace(counters.NAMESPACE))
  got = {c.key.metric.name: c.committed for c in q["counters"] if c.key.metric.name.startswith("pooled_test")}
  dist = {d.key.metric.name: d.committed for d in q["distributions"] if d.key.metric.name.startswith("pooled_test")}
  return got, dist


@pytest.mark.parametrize("threads", [1, 3])
def test_every_output_and_every_counter_arrives(threads):
  _IN_FLIGHT.update(now=0, max=0)
  got, dist = _run(f"t{threads}", threads)
  assert got == {"pooled_test_odd": 100, "pooled_test_even": 100}
  d = dist["pooled_test_value"]
  assert (d.count, d.sum, d.min, d.max) == (100, sum(range(0, 200, 2)), 0, 198)
  names = _SEEN[f"t{threads}"]
  if threads == 1:
    assert not any(n.startswith("cloudfill-dofn") for n in names)
  else:
    assert names and all(n.startswith("cloudfill-dofn") for n in names)
    assert 1 < _IN_FLIGHT["max"] <= threads


def test_counters_captured_on_a_thread_are_replayed_not_lost():
  with counters.captured() as events:
    counters.inc("a", 2)
    counters.record("b", 7.0)
    with counters.captured() as inner:
      counters.inc("c")
    counters.inc("d")
  assert events == [("inc", "a", 2), ("record", "b", 7.0), ("inc", "d", 1)]
  assert inner == [("inc", "c", 1)]


def test_a_pooled_dofn_pickles_without_its_pool():
  import pickle
  fn = Square("pickle", threads=2)
  fn.setup()
  try:
    copy = pickle.loads(pickle.dumps(fn))
    assert copy._pool is None  # pylint: disable=protected-access
  finally:
    fn.teardown()


def test_pool_threads_split_the_cores_between_local_worker_processes():
  from apache_beam.options.pipeline_options import PipelineOptions

  from model_loader import native
  from transforms.pooled import pool_threads
  mp = PipelineOptions(["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
  assert pool_threads(beam.Pipeline(options=mp)) == native.threads_per_worker(2)
  assert pool_threads(beam.Pipeline(options=PipelineOptions([]))) is None
  assert pool_threads(beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"]))) is None
  # A Dataflow pipeline wants a project to be built; the options alone are what is read.
  dataflow = types.SimpleNamespace(_options=PipelineOptions(["--runner=DataflowRunner"]))
  assert pool_threads(dataflow) == 1


def test_a_dofn_given_its_threads_caps_the_processes_other_thread_maps():
  before = parallel.default_threads()
  fn = Square("budget", threads=1)
  fn.setup()
  try:
    assert parallel.default_threads() == 1
    assert list(parallel.ordered_map(lambda i: threading.current_thread().name, range(3), parallel.default_threads())) \
        == [threading.current_thread().name] * 3
  finally:
    fn.teardown()
  parallel._budget.clear()  # pylint: disable=protected-access
  assert parallel.default_threads() == before
  Square("no budget").setup()  # None: the cores, no budget set
  assert parallel.default_threads() == before


def test_only_small_tiles_and_files_go_to_the_pool():
  import numpy as np
  side = int(POOL_MAX_PIXELS**0.5)
  tile = types.SimpleNamespace(mask=np.zeros((side, side), bool))
  assert small_tile(tile)
  assert not small_tile(types.SimpleNamespace(mask=np.zeros((side + 1, side), bool)))
  assert not small_tile(types.SimpleNamespace(packed_mask=np.zeros(8, np.uint8)))
  assert not small_tile(types.SimpleNamespace(mask=lambda: np.zeros((2, 2), bool)))  # a SceneRef's mask() unpacks it
  assert small_file(1) and small_file(POOL_MAX_BYTES)
  assert not small_file(0) and not small_file(POOL_MAX_BYTES + 1)  # 0: size unknown


def _spin(seconds: float) -> None:
  """Burns CPU on this thread for ``seconds`` of its CPU time."""
  end = time.thread_time() + seconds
  while time.thread_time() < end:
    pass


class Spin(PooledDoFn):
  """Burns 20 ms of CPU for even numbers, sleeps 20 ms (no CPU) for odd ones."""

  STEP = "pooled_test_spin"

  def process(self, n, window=WINDOW, timestamp=TIMESTAMP):
    yield from self.pooled(self._work, (n,), window, timestamp)

  def _work(self, n):
    if n % 2:
      time.sleep(0.02)
    else:
      _spin(0.02)
    yield n


def _downstream_spin(n):
  _spin(0.02)
  return n


@pytest.mark.parametrize("threads", [1, 2])
def test_each_element_records_its_own_cpu_time_not_its_wall_time_nor_its_consumers(threads):
  """cpu_us_{STEP} holds each element's CPU time on the thread that did its work:
  20 ms for those that computed, ~0 for those that slept 20 ms; inline (1
  thread), the CPU a fused step downstream burns between two outputs is not
  counted either."""
  p = TestPipeline(runner="DirectRunner")
  out = (p | beam.Create(list(range(12))) | beam.ParDo(Spin(threads)) | beam.Map(_downstream_spin))
  assert_that(out, equal_to(list(range(12))))
  result = p.run()
  result.wait_until_finish()
  q = result.metrics().query(MetricsFilter().with_namespace(counters.NAMESPACE))
  d = {x.key.metric.name: x.committed for x in q["distributions"]}[pooled.cpu_metric("pooled_test_spin")]
  assert d.count == 12
  assert 6 * 19_000 <= d.sum <= 6 * 20_000 + 6 * 6_000  # 6 × 20 ms computed; sleeping and downstream not counted
  assert d.max >= 19_000 and d.min < 5_000

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

from transforms import counters
from transforms.pooled import TIMESTAMP, WINDOW, PooledDoFn

_SEEN: dict[str, set] = {}
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

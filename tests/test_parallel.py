"""transforms.parallel.ordered_map: order kept, items drawn in the caller's thread, bounded, errors raised."""

from __future__ import annotations

import threading
import time

import pytest

from transforms import parallel


def test_results_come_in_the_items_order_whatever_order_they_finish_in():
  # The first items sleep longest, so they finish last.
  slow_first = lambda i: (time.sleep(0.002 * (20 - i)), i * i)[1]  # noqa: E731
  assert list(parallel.ordered_map(slow_first, range(20), threads=4)) == [i * i for i in range(20)]
  assert list(parallel.ordered_map(slow_first, range(20), threads=1)) == [i * i for i in range(20)]


def test_items_are_drawn_in_the_callers_thread_and_work_runs_on_the_pool():
  caller = threading.current_thread().name
  drawn, ran = [], []

  def items():
    for i in range(10):
      drawn.append(threading.current_thread().name)
      yield i

  def fn(i):
    ran.append(threading.current_thread().name)
    return i

  assert list(parallel.ordered_map(fn, items(), threads=3)) == list(range(10))
  assert set(drawn) == {caller}
  assert all(name.startswith("cloudfill-fill") for name in ran)


def test_no_more_than_ahead_items_are_drawn_beyond_the_last_result():
  drawn = []

  def items():
    for i in range(100):
      drawn.append(i)
      yield i

  out = parallel.ordered_map(lambda i: i, items(), threads=2, ahead=5)
  for k in range(10):
    assert next(out) == k
    assert len(drawn) <= k + 5
  out.close()
  assert len(drawn) <= 15


def test_an_error_is_raised_at_its_items_turn_after_the_results_before_it():

  def fn(i):
    if i == 3:
      raise ValueError("item 3")
    return i

  got = []
  with pytest.raises(ValueError, match="item 3"):
    for r in parallel.ordered_map(fn, range(10), threads=2):
      got.append(r)
  assert got == [0, 1, 2]


def test_default_threads_follow_the_cores_this_process_may_use():
  assert 1 <= parallel.default_threads() <= min(parallel.MAX_THREADS, parallel.available_cores())

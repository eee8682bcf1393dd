"""TensorBoard scalars without TensorFlow (the GPU machine has none).

Writes event files with the ``tensorboard`` package's own writer and
protocol buffers; TensorBoard reads them as usual.
"""

from __future__ import annotations

import os
import time


class ScalarWriter:
  """Appends scalar summaries to ``logdir``."""

  def __init__(self, logdir: str):
    from tensorboard.summary.writer.event_file_writer import EventFileWriter  # pylint: disable=import-outside-toplevel
    os.makedirs(logdir, exist_ok=True)
    self._writer = EventFileWriter(logdir)

  def scalars(self, step: int, values: dict[str, float]) -> None:
    from tensorboard.compat.proto.event_pb2 import Event  # pylint: disable=import-outside-toplevel
    from tensorboard.compat.proto.summary_pb2 import Summary  # pylint: disable=import-outside-toplevel
    summary = Summary(value=[Summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()])
    self._writer.add_event(Event(wall_time=time.time(), step=int(step), summary=summary))

  def close(self) -> None:
    self._writer.flush()
    self._writer.close()

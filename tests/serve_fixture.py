"""A real ``cloudfill serve`` on 127.0.0.1 for tests (uvicorn in a thread)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Iterator, Optional

import numpy as np


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@contextlib.contextmanager
def running(model: Optional[str], config: Optional[str] = None, **spec_kwargs) -> Iterator[tuple[str, object]]:
  """Yields (base URL, Service) of a server listening on a free loopback port."""
  import uvicorn

  from pipeline import serve
  port = free_port()
  spec = serve.ServeSpec(port=port, **spec_kwargs)
  svc = serve.load_service(spec, model, config)
  server = uvicorn.Server(
      uvicorn.Config(serve.create_app(svc), host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
  thread = threading.Thread(target=server.run, daemon=True)
  thread.start()
  deadline = time.monotonic() + 60
  while not server.started:
    if time.monotonic() > deadline or not thread.is_alive():
      raise RuntimeError("the test server did not start")
    time.sleep(0.02)
  try:
    yield f"http://127.0.0.1:{port}", svc
  finally:
    server.should_exit = True
    thread.join(timeout=30)


def mosaic(paths: list[str], n: int) -> np.ndarray:
  """An ``n x n`` mosaic of the top-left 256 x 256 of the rasters at ``paths`` (cycled)."""
  from tests.helpers import read_raster
  tiles = [read_raster(p)[0][:256, :256] for p in paths]
  rows = [np.concatenate([tiles[(r * n + c) % len(tiles)] for c in range(n)], axis=1) for r in range(n)]
  return np.concatenate(rows, axis=0)

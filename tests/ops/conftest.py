"""Fixtures for the operations tests (tests/ops).

The model is tests/conftest.py's ``mean_model`` (a mean-fill SavedModel with
64-pixel windows), so every run here takes seconds, not minutes. Helpers are
in :mod:`tests.ops.opslib`.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

LOOPBACK = ("127.0.0.1", "localhost", "::1", "0.0.0.0", "")


@pytest.fixture()
def no_network(monkeypatch):
  """Fails any connection or name lookup that leaves the loopback interface.

  Yields:
    The list of refused destinations (a test asserts it stays empty, so
    nothing even tried to reach Google).
  """
  refused: list[Any] = []
  real_connect, real_gai = socket.socket.connect, socket.getaddrinfo

  def connect(sock, address):
    if isinstance(address, tuple) and address[0] not in LOOPBACK:
      refused.append(address)
      raise OSError(f"network disabled by the test: connect {address}")
    return real_connect(sock, address)

  def getaddrinfo(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    if name is not None and name not in LOOPBACK:
      refused.append(name)
      raise socket.gaierror(f"network disabled by the test: lookup {name}")
    return real_gai(host, *args, **kwargs)

  monkeypatch.setattr(socket.socket, "connect", connect)
  monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
  yield refused

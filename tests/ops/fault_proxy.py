"""A loopback HTTP reverse proxy that injects object-storage faults.

Put it between a client and a real server (the GCS emulator): it forwards
every request, except that a seeded share of them is answered with
``429 Too Many Requests`` or ``503 Service Unavailable``, or has its
connection dropped without any response. It counts what it injected, so a
test can check that faults really happened and that nothing was lost anyway.

To keep the client's retries finite, one request (method and path) is failed
at most ``max_consecutive`` times in a row; the next try goes through.

Responses that name the upstream server (JSON ``selfLink``/``mediaLink``,
resumable-upload ``Location`` headers) are rewritten to name the proxy, so the
client's follow-up requests come back through it.

Example::

  with FaultProxy("http://127.0.0.1:9023", rate=0.2, seed=7) as proxy:
    os.environ["STORAGE_EMULATOR_HOST"] = proxy.url
    ...
    print(proxy.injected)  # {"429": 3, "503": 4, "drop": 2}
"""

from __future__ import annotations

import collections
import http.client
import http.server
import random
import socket
import threading
import urllib.parse
from typing import Optional, Sequence

FAULTS = ("429", "503", "drop")
_HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers", "transfer-encoding",
    "upgrade", "content-length", "host"
}


class FaultProxy:
  """A threaded reverse proxy on 127.0.0.1 in front of ``upstream``.

  Attributes:
    url: ``http://127.0.0.1:PORT`` of the proxy.
    injected: Faults injected so far, by kind (``429``, ``503``, ``drop``).
    forwarded: Requests forwarded to the upstream server.
    failed_requests: ``(method, path, fault)`` of every injected fault.
  """

  def __init__(self,
               upstream: str,
               *,
               rate: float = 0.2,
               seed: int = 0,
               faults: Sequence[str] = FAULTS,
               max_consecutive: int = 2,
               methods: Optional[Sequence[str]] = None,
               fail_first: Sequence[str] = ()):
    """Configures the proxy; :meth:`start` (or ``with``) runs it.

    Args:
      upstream: ``http://host:port`` of the real server.
      rate: Share of requests to fail, 0…1.
      seed: Seed of the fault choices (same seed, same sequence of choices).
      faults: Kinds to inject, drawn uniformly.
      max_consecutive: Most faults in a row on one (method, path).
      methods: Only fail requests with these HTTP methods (default: all).
      fail_first: HTTP methods whose first request is always failed, so each
        kind of request meets a fault whatever the order requests arrive in.
    """
    parsed = urllib.parse.urlsplit(upstream)
    self._up_host, self._up_port = parsed.hostname, parsed.port or 80
    self._up_netloc = parsed.netloc
    self.rate = rate
    self._faults = tuple(faults)
    self._max_consecutive = max_consecutive
    self._methods = {m.upper() for m in methods} if methods else None
    self._rng = random.Random(seed)
    self._fail_first = {m.upper() for m in fail_first}
    self._lock = threading.Lock()
    self._streak: dict[tuple[str, str], int] = collections.defaultdict(int)
    self.injected: collections.Counter = collections.Counter()
    self.forwarded = 0
    self.failed_requests: list[tuple[str, str, str]] = []
    self._server: Optional[http.server.ThreadingHTTPServer] = None
    self._thread: Optional[threading.Thread] = None
    self.url = ""

  # Decisions are made under a lock from one seeded generator.
  def _decide(self, method: str, path: str) -> Optional[str]:
    key = (method, path.split("?", 1)[0])
    with self._lock:
      draw, kind = self._rng.random(), self._rng.choice(self._faults)
      if self._methods is not None and method not in self._methods:
        return None
      first = method in self._fail_first
      self._fail_first.discard(method)
      if (first or draw < self.rate) and self._streak[key] < self._max_consecutive:
        self._streak[key] += 1
        self.injected[kind] += 1
        self.failed_requests.append((method, path, kind))
        return kind
      self._streak[key] = 0
      self.forwarded += 1
      return None

  @property
  def total_injected(self) -> int:
    return sum(self.injected.values())

  def start(self) -> "FaultProxy":
    proxy = self

    class Handler(http.server.BaseHTTPRequestHandler):
      protocol_version = "HTTP/1.1"

      def log_message(self, *args):  # Quiet.
        pass

      def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
          chunks = []
          while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
              while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
              return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

      def _handle(self):
        body = self._body()
        fault = proxy._decide(self.command, self.path)  # pylint: disable=protected-access
        if fault == "drop":
          self.close_connection = True
          try:
            self.connection.shutdown(socket.SHUT_RDWR)
          except OSError:
            pass
          return
        if fault in ("429", "503"):
          msg = b'{"error": {"code": %s, "message": "injected by FaultProxy"}}' % fault.encode()
          self.send_response(int(fault))
          self.send_header("Content-Type", "application/json")
          self.send_header("Content-Length", str(len(msg)))
          self.end_headers()
          self.wfile.write(msg)
          return
        self._forward(body)

      def _forward(self, body: bytes):
        conn = http.client.HTTPConnection(proxy._up_host, proxy._up_port, timeout=60)  # pylint: disable=protected-access
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["Host"] = proxy._up_netloc  # pylint: disable=protected-access
        try:
          conn.request(self.command, self.path, body=body or None, headers=headers)
          resp = conn.getresponse()
          data = resp.read()
          resp_headers = resp.getheaders()
        finally:
          conn.close()
        up = proxy._up_netloc.encode()  # pylint: disable=protected-access
        me = urllib.parse.urlsplit(proxy.url).netloc.encode()
        ctype = dict((k.lower(), v) for k, v in resp_headers).get("content-type", "")
        if "json" in ctype:
          data = data.replace(up, me)
        self.send_response(resp.status, resp.reason)
        for k, v in resp_headers:
          if k.lower() in _HOP_BY_HOP:
            continue
          if k.lower() == "location":
            v = v.replace(up.decode(), me.decode())
          self.send_header(k, v)
        if self.command == "HEAD":  # No body: pass the object's own length on.
          length = dict((k.lower(), v) for k, v in resp_headers).get("content-length", "0")
        else:
          length = str(len(data))
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
          self.wfile.write(data)

      do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

    class Server(http.server.ThreadingHTTPServer):
      daemon_threads = True

      def handle_error(self, request, client_address):
        # A client closing its end (after a dropped answer) is expected here.
        import sys  # pylint: disable=import-outside-toplevel
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
          super().handle_error(request, client_address)

    self._server = Server(("127.0.0.1", 0), Handler)
    self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
    self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
    self._thread.start()
    return self

  def stop(self) -> None:
    if self._server is not None:
      self._server.shutdown()
      self._server.server_close()
      self._server = None

  def __enter__(self) -> "FaultProxy":
    return self.start()

  def __exit__(self, *exc) -> None:
    self.stop()

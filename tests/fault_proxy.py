"""A flaky bucket for tests: an HTTP proxy in front of the GCS emulator that answers a seeded share
of requests with 503 or 429, or resets the connection, as a bucket under load from many hosts does.

    with gcs_emulator.serve("bkt") as env, fault_proxy.serve(env, rate=0.05, seed=0) as flaky:
      subprocess.run([...], env={**os.environ, **flaky.env})   # clients talk to the proxy
      flaky.injected   # {"503": n, "429": n, "reset": n}

Nothing of gcsfs or tensorstore is replaced: their own retry logic meets the faults. A fault is
never injected more than `max_in_a_row` times running, so every request succeeds within a few
retries (transient errors), until a test sets `flaky.proxy.outage = "503"`: then every request
gets that answer (an outage past every client's retries) until it is set back to None.
"""

import collections
import contextlib
import http.client
import http.server
import json
import random
import socket
import struct
import threading
import urllib.parse

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade",
              "te", "trailer"}


class FaultProxy(http.server.ThreadingHTTPServer):
  """Forwards every request to `upstream`, injecting faults by a seeded schedule."""

  daemon_threads = True

  def __init__(self, upstream: str, rate: float, seed: int, kinds=("503", "429", "reset"),
               max_in_a_row: int = 2):
    super().__init__(("127.0.0.1", 0), _Handler)
    target = urllib.parse.urlparse(upstream)
    self.upstream = (target.hostname, target.port)
    self.rate, self.kinds, self.max_in_a_row = rate, kinds, max_in_a_row
    self.rng, self.lock = random.Random(seed), threading.Lock()
    self.in_a_row, self.requests = 0, 0
    self.injected = collections.Counter()
    self.outage = None   # a status ("503") every request gets while set: storage that is down

  @property
  def url(self) -> str:
    return f"http://127.0.0.1:{self.server_address[1]}"

  def fault(self) -> str | None:
    """The fault for the next request, or None to forward it."""
    with self.lock:
      self.requests += 1
      if self.outage:
        self.injected[f"outage {self.outage}"] += 1
        return self.outage
      if self.in_a_row < self.max_in_a_row and self.rng.random() < self.rate:
        self.in_a_row += 1
        kind = self.rng.choice(self.kinds)
        self.injected[kind] += 1
        return kind
      self.in_a_row = 0
      return None


class _Handler(http.server.BaseHTTPRequestHandler):
  protocol_version = "HTTP/1.1"

  def log_message(self, *args):  # quiet
    pass

  def _body(self) -> bytes:
    if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
      out = b""
      while True:
        size = int(self.rfile.readline().strip().split(b";")[0], 16)
        if size == 0:
          self.rfile.readline()
          return out
        out += self.rfile.read(size)
        self.rfile.readline()
    return self.rfile.read(int(self.headers.get("Content-Length") or 0))

  def _reply(self, status: int, headers: list, body: bytes) -> None:
    self.send_response(status)
    head = self.command == "HEAD"   # keeps the resource's length, sends no body
    for key, value in headers:
      if key.lower() not in HOP_BY_HOP and (head or key.lower() != "content-length"):
        self.send_header(key, value)
    if not head:
      self.send_header("Content-Length", str(len(body)))
    self.end_headers()
    if not head:
      self.wfile.write(body)

  def _forward(self) -> None:
    body = self._body()
    kind = self.server.fault()
    if kind == "reset":   # an RST, no response: what a dropped connection looks like
      self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
      self.close_connection = True
      self.connection.close()
      return
    if kind is not None:
      error = {"error": {"code": int(kind), "message": f"injected {kind}"}}
      self._reply(int(kind), [("Content-Type", "application/json")] + (
          [("Retry-After", "0")] if kind == "429" else []), json.dumps(error).encode())
      return
    conn = http.client.HTTPConnection(*self.server.upstream, timeout=60)
    try:
      headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
      headers["Content-Length"] = str(len(body))
      conn.request(self.command, self.path, body=body, headers=headers)
      response = conn.getresponse()
      self._reply(response.status, response.getheaders(), response.read())
    finally:
      conn.close()

  do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward


class Flaky:
  """What a test gets: the proxy and the client environment that points at it."""

  def __init__(self, proxy: FaultProxy, env: dict):
    self.proxy = proxy
    self.env = {**env, "STORAGE_EMULATOR_HOST": proxy.url, "TENSORSTORE_GCS_HTTP_URL": proxy.url}

  @property
  def injected(self) -> dict:
    return dict(self.proxy.injected)


@contextlib.contextmanager
def serve(emulator_env: dict, rate: float, seed: int, **kw):
  """A FaultProxy in front of the emulator of `emulator_env` (gcs_emulator.serve's)."""
  proxy = FaultProxy(emulator_env["STORAGE_EMULATOR_HOST"], rate, seed, **kw)
  thread = threading.Thread(target=proxy.serve_forever, daemon=True)
  thread.start()
  try:
    yield Flaky(proxy, emulator_env)
  finally:
    proxy.shutdown()
    proxy.server_close()

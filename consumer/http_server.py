"""A ``ThreadingHTTPServer`` served by a daemon thread: what the health and webhook ports share.

Two bounds keep clients from exhausting the consumer process, whatever they send:

- **a deadline per request**: reading a request (line, headers, body) must finish within
  ``request_timeout_s`` of its start, however the client spreads its bytes (one byte per second
  does not reset it); then the connection is closed. Answers are written with the same timeout.
- **a cap on connections served at once** (``max_connections``): one more is answered ``503``
  with ``Retry-After`` by the accepting thread, without a thread of its own, and closed.
"""

from __future__ import annotations

import io
import logging
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.1
"""How often the serving loop checks for :meth:`BackgroundHTTPServer.stop` (it bounds the stop time)."""
BUSY_BODY = b'{"status": "refused", "reason": "busy", "detail": "too many requests at once; retry later"}'
BUSY_ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: " + str(len(BUSY_BODY)).encode() + b"\r\n\r\n" + BUSY_BODY
)


class _Deadline(BaseHTTPRequestHandler):
    """Mixed into a server's handler: its reads share one deadline per request (module docstring).

    A request that misses its deadline makes :class:`TimeoutError` in a read;
    ``BaseHTTPRequestHandler`` then closes the connection (a handler reading a body may answer
    first).
    """

    request_timeout_s: float = 10.0
    _deadline: float = 0.0

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.request_timeout_s)
        self.rfile.close()  # the socket's own reader; ours replaces it
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self))

    def handle_one_request(self) -> None:
        self._deadline = time.monotonic() + self.request_timeout_s
        super().handle_one_request()


class _DeadlineReader(io.RawIOBase):
    """Socket reads that each wait only for what is left of the handler's request deadline."""

    def __init__(self, sock: socket.socket, handler: _Deadline) -> None:
        super().__init__()
        self._sock = sock
        self._handler = handler

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._handler._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request took longer than its deadline")
        self._sock.settimeout(left)
        try:
            return self._sock.recv_into(buffer)
        finally:
            self._sock.settimeout(self._handler.request_timeout_s)  # for the answer


class _BoundedServer(ThreadingHTTPServer):
    """Serves at most ``max_connections`` connections at once; turns the others away with 503."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        max_connections: int,
        on_busy: Callable[[], None],
    ) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_connections)
        self._on_busy = on_busy

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._turn_away(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _turn_away(self, request: socket.socket) -> None:
        """Answer 503 without blocking the accepting thread, then close."""
        try:
            self._on_busy()
        except Exception:  # a metric must not stop the server
            log.debug("busy callback failed", exc_info=True)
        try:
            request.setblocking(False)
            _drain(request)  # unread input would turn the close into a reset that hides the answer
            request.send(BUSY_ANSWER)
        except OSError:
            pass
        self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that failed (the client vanished, a bug) is logged by type only."""
        log.info("HTTP connection failed", exc_info=False, extra={"server": type(self).__name__})


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(65536):
            pass
    except OSError:  # nothing more to read now (EAGAIN) or the peer is gone
        pass


class BackgroundHTTPServer:
    """Serves ``handler`` on ``host:port`` in a daemon thread named ``name`` until :meth:`stop`.

    ``request_timeout_s`` is the deadline of each request (default: the handler's ``timeout``,
    else 10 s), ``max_connections`` the most connections served at once (``on_busy`` is called for
    each one turned away with 503).
    """

    def __init__(
        self,
        host: str,
        port: int,
        handler: type[BaseHTTPRequestHandler],
        *,
        name: str,
        request_timeout_s: float | None = None,
        max_connections: int = 32,
        on_busy: Callable[[], None] = lambda: None,
    ) -> None:
        timeout = request_timeout_s or handler.timeout or 10.0
        bounded = type(handler.__name__, (_Deadline, handler), {"request_timeout_s": timeout})
        self._server = _BoundedServer((host, port), bounded, max_connections, on_busy)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(POLL_INTERVAL_S,), name=name, daemon=True
        )

    @property
    def port(self) -> int:
        """The bound port (useful when 0 was asked for)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Start serving in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


__all__ = ["BUSY_ANSWER", "BackgroundHTTPServer"]

"""A plain HTTP proxy in front of the real Label Studio that holds, fails or hangs chosen imports.

Tests point a consumer's ``LABEL_STUDIO_URL`` at it to make faults Label Studio itself would make:
an import applied late (held, then forwarded whether or not its client is still there), an import
that always answers HTTP 500 (a task that trips a server bug), an import never answered (the
client times out). Every other request goes through unchanged.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import httpx

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-encoding", "content-length", "host"}
)
POISON_500_DETAIL = "unsupported Unicode escape sequence (proxy fault)"


class Relay:
    """A plain HTTP proxy on 127.0.0.1 to ``upstream``; subclasses decide per request in
    :meth:`forward` (the default relays every request unchanged)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self._client = httpx.Client(timeout=120)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                proxy.forward(self, self.rfile.read(int(self.headers.get("Content-Length") or 0)))

            do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._client.close()

    def forward(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        """Answer one request (its body already read)."""
        response = self.upstream_response(handler, body)
        if response is not None:
            self.answer_with(handler, response)

    def upstream_response(self, handler: BaseHTTPRequestHandler, body: bytes) -> httpx.Response | None:
        """Label Studio's answer to the request, or None when it cannot be had (down, or closing)."""
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            return self._client.request(
                handler.command, self.upstream + handler.path, headers=headers, content=body
            )
        except httpx.HTTPError:
            return None

    def answer_with(self, handler: BaseHTTPRequestHandler, response: httpx.Response) -> None:
        """Pass Label Studio's answer on."""
        self.answer(handler, response.status_code, response.content, dict(response.headers))

    @staticmethod
    def answer(handler: BaseHTTPRequestHandler, status: int, content: bytes, headers: dict[str, str]) -> None:
        """Answer the client (hop-by-hop headers left out); a client killed meanwhile is ignored."""
        try:
            handler.send_response(status)
            for key, value in headers.items():
                if key.lower() not in HOP_BY_HOP:
                    handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(content)))
            handler.end_headers()
            handler.wfile.write(content)
        except OSError:  # the client was killed while its request was held
            pass


class HoldingProxy(Relay):
    """Proxy to ``upstream``. With ``hold_s``, it holds the first ``POST .../import``: forwarded when a
    task lookup (``GET /api/tasks``) has been answered, or after ``hold_s``, whether or not its client
    is still there (what a server does with a request whose client was killed).

    An import whose body contains ``fail_marker`` is answered HTTP 500 without reaching Label Studio;
    one containing ``hang_marker`` is never answered (held until the proxy closes). The 500 answer
    echoes the request's ``Authorization`` header, as a careless error page might.
    """

    def __init__(
        self,
        upstream: str,
        hold_s: float | None = None,
        *,
        fail_marker: bytes | None = None,
        hang_marker: bytes | None = None,
    ) -> None:
        super().__init__(upstream)
        self.hold_s = hold_s
        self.fail_marker = fail_marker
        self.hang_marker = hang_marker
        self.holding = threading.Event()
        self.lookup_answered = threading.Event()
        self.released = threading.Event()
        self.closing = threading.Event()
        self.lookups_while_holding = 0
        self.failed = 0
        """Imports answered 500 for their ``fail_marker``."""
        self.hung = 0
        """Imports left unanswered for their ``hang_marker``."""
        self._lock = threading.Lock()

    def close(self) -> None:
        self.closing.set()
        super().close()

    def forward(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        is_import = handler.command == "POST" and handler.path.split("?")[0].endswith("/import")
        if is_import and self.fail_marker is not None and self.fail_marker in body:
            with self._lock:
                self.failed += 1
            # echoes the credentials, as a careless error page might: dead letters must mask them
            answer = {"detail": POISON_500_DETAIL, "auth": handler.headers.get("Authorization", "")}
            self.answer(handler, 500, json.dumps(answer).encode(), {"Content-Type": "application/json"})
            return
        if is_import and self.hang_marker is not None and self.hang_marker in body:
            with self._lock:
                self.hung += 1
            self.closing.wait()
            return
        held = False
        if is_import and self.hold_s is not None:
            with self._lock:
                held = not self.holding.is_set()
                self.holding.set()
        if held:
            self.lookup_answered.wait(self.hold_s)
        response = self.upstream_response(handler, body)
        if response is None:  # Label Studio is down, or the proxy is closing at the end of the test
            return
        if held:
            self.released.set()
        self.answer_with(handler, response)
        if handler.command == "GET" and handler.path.startswith("/api/tasks") and self.holding.is_set():
            with self._lock:
                if not self.released.is_set():
                    self.lookups_while_holding += 1
            self.lookup_answered.set()

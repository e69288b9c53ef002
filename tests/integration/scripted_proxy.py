"""A proxy in front of the real Label Studio that fails, delays or holds chosen requests.

The relay is the one of ``HoldingProxy`` (tests/integration/ls_proxy.py), driven by a
script: each :class:`Act` applies once, to the first request it matches that no earlier act took;
requests no act takes pass through. A held request is forwarded — whether or not its client is
still alive, as a server does — once a task lookup (``GET /api/tasks``) has been answered while it
was held, once ``release`` is set, or after ``hold_s``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from tests.integration.ls_proxy import HOP_BY_HOP

Match = Callable[[str, str], bool]
"""(method, path) → whether an act applies to the request."""


def is_import(method: str, path: str) -> bool:
    return method == "POST" and path.split("?", maxsplit=1)[0].endswith("/import")


def is_project_lookup(method: str, path: str) -> bool:
    return method == "GET" and path.startswith("/api/projects")


def is_task_lookup(method: str, path: str) -> bool:
    return method == "GET" and path.startswith("/api/tasks")


@dataclass(eq=False)
class Act:
    """What to do with one matching request: wait ``delay_s``, then answer ``status`` without
    forwarding, or hold it (``hold_s`` > 0) and forward it, or just forward it."""

    matches: Match
    status: int | None = None
    delay_s: float = 0.0
    hold_s: float = 0.0
    release_on_lookup: bool = True
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    forwarded: threading.Event = field(default_factory=threading.Event)
    lookups_while_holding: int = 0
    arrived_at: float = 0.0
    """``time.monotonic()`` when the request arrived."""


class ScriptedProxy:
    """A plain HTTP proxy to ``upstream`` that plays ``acts`` (see the module docstring)."""

    def __init__(self, upstream: str, acts: list[Act]) -> None:
        self.upstream = upstream.rstrip("/")
        self.acts = acts
        self._taken: set[int] = set()
        self.lookups_at: list[float] = []
        """``time.monotonic()`` of every task lookup's arrival."""
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=120)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> ScriptedProxy:
        self._thread.start()
        return self

    def close(self) -> None:
        for act in self.acts:
            act.release.set()
        self.server.shutdown()
        self.server.server_close()
        self._client.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                proxy.forward(self)

            do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

        return Handler

    def _take(self, method: str, path: str) -> Act | None:
        with self._lock:
            for index, act in enumerate(self.acts):
                if index not in self._taken and act.matches(method, path):
                    self._taken.add(index)
                    return act
        return None

    def forward(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        if is_task_lookup(handler.command, handler.path):
            self.lookups_at.append(time.monotonic())
        act = self._take(handler.command, handler.path)
        if act is not None:
            act.arrived_at = time.monotonic()
            act.arrived.set()
            if act.delay_s:
                time.sleep(act.delay_s)
            if act.status is not None:
                self._answer(handler, act.status, {}, b'{"detail": "injected by the test proxy"}')
                return
            if act.hold_s:
                act.release.wait(act.hold_s)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            response = self._client.request(
                handler.command, self.upstream + handler.path, headers=headers, content=body
            )
        except httpx.HTTPError:  # the proxy is closing at the end of the test
            return
        if act is not None:
            act.forwarded.set()
        self._answer(handler, response.status_code, dict(response.headers), response.content)
        if is_task_lookup(handler.command, handler.path):
            self._lookup_answered()

    def _lookup_answered(self) -> None:
        with self._lock:
            for act in self.acts:
                if act.hold_s and act.arrived.is_set() and not act.forwarded.is_set():
                    act.lookups_while_holding += 1
                    if act.release_on_lookup:
                        act.release.set()

    @staticmethod
    def _answer(
        handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], content: bytes
    ) -> None:
        try:
            handler.send_response(status)
            for key, value in headers.items():
                if key.lower() not in HOP_BY_HOP:
                    handler.send_header(key, value)
            if "content-type" not in {k.lower() for k in headers}:
                handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(content)))
            handler.end_headers()
            handler.wfile.write(content)
        except OSError:  # the client was killed while its request was held
            pass

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
from http.server import BaseHTTPRequestHandler

from tests.integration.ls_proxy import Relay

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


class ScriptedProxy(Relay):
    """A plain HTTP proxy to ``upstream`` that plays ``acts`` (see the module docstring)."""

    def __init__(self, upstream: str, acts: list[Act]) -> None:
        super().__init__(upstream)
        self.acts = acts
        self._taken: set[int] = set()
        self.lookups_at: list[float] = []
        """``time.monotonic()`` of every task lookup's arrival."""
        self._lock = threading.Lock()

    def close(self) -> None:
        for act in self.acts:
            act.release.set()
        super().close()

    def _take(self, method: str, path: str) -> Act | None:
        with self._lock:
            for index, act in enumerate(self.acts):
                if index not in self._taken and act.matches(method, path):
                    self._taken.add(index)
                    return act
        return None

    def forward(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        if is_task_lookup(handler.command, handler.path):
            self.lookups_at.append(time.monotonic())
        act = self._take(handler.command, handler.path)
        if act is not None:
            act.arrived_at = time.monotonic()
            act.arrived.set()
            if act.delay_s:
                time.sleep(act.delay_s)
            if act.status is not None:
                content = b'{"detail": "injected by the test proxy"}'
                self.answer(handler, act.status, content, {"Content-Type": "application/json"})
                return
            if act.hold_s:
                act.release.wait(act.hold_s)
        response = self.upstream_response(handler, body)
        if response is None:  # the proxy is closing at the end of the test
            return
        if act is not None:
            act.forwarded.set()
        self.answer_with(handler, response)
        if is_task_lookup(handler.command, handler.path):
            self._lookup_answered()

    def _lookup_answered(self) -> None:
        with self._lock:
            for act in self.acts:
                if act.hold_s and act.arrived.is_set() and not act.forwarded.is_set():
                    act.lookups_while_holding += 1
                    if act.release_on_lookup:
                        act.release.set()

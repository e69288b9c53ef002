"""A member SIGKILLed inside its import request: Label Studio applies that request after the next
owner took over (docs/RELIABILITY.md, seed 8). The next owner must not ask Label Studio about the
uncertain runs before the request could have ended, or it finds nothing and imports them again.

A proxy between the consumers and the real Label Studio holds the first import request, forwards
it even though its client died, and lets it through as soon as anyone has asked Label Studio for
tasks (or after ``HOLD_S``). Without the wait, the next owner asks within the hold, is told
"nothing", imports, and the held request doubles every run; with it, the question comes after the
hold, and finds the runs.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from labelstudio_ingest.schemas import Target
from tests.consumer.runner import ConsumerProcess, Rig, eventually, project_titled, prompt_event, run_ids_of

pytestmark = pytest.mark.integration

IMPORT_TIMEOUT_S = 20
"""Longer than a crashed member's hand-over on tansu (8-11 s with the test session timeout)."""
HOLD_S = 15.0
"""Longest hold of the first import: after the next owner would ask without the fix (about 11 s
after the kill; 8 s measured), before the import timeout (when it asks with the fix)."""
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-encoding", "content-length", "host"}
)


class HoldingProxy:
    """A plain HTTP proxy to Label Studio that holds the first ``POST .../import``.

    The held request is forwarded when a task lookup (``GET /api/tasks``) has been answered, or
    after ``hold_s``, whether or not its client is still there: what a server does with a request
    whose client was killed.
    """

    def __init__(self, upstream: str, hold_s: float) -> None:
        self.upstream = upstream.rstrip("/")
        self.hold_s = hold_s
        self.holding = threading.Event()
        self.lookup_answered = threading.Event()
        self.released = threading.Event()
        self.lookups_while_holding = 0
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=120)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> HoldingProxy:
        self._thread.start()
        return self

    def close(self) -> None:
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

    def forward(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        held = False
        if handler.command == "POST" and handler.path.split("?")[0].endswith("/import"):
            with self._lock:
                held = not self.holding.is_set()
                self.holding.set()
        if held:
            self.lookup_answered.wait(self.hold_s)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            response = self._client.request(
                handler.command, self.upstream + handler.path, headers=headers, content=body
            )
        except httpx.HTTPError:  # the proxy is closing at the end of the test
            return
        if held:
            self.released.set()
        try:
            handler.send_response(response.status_code)
            for key, value in response.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(response.content)))
            handler.end_headers()
            handler.wfile.write(response.content)
        except OSError:  # the client was killed while its request was held
            pass
        if handler.command == "GET" and handler.path.startswith("/api/tasks") and self.holding.is_set():
            with self._lock:
                if not self.released.is_set():
                    self.lookups_while_holding += 1
            self.lookup_answered.set()


def metric(process: ConsumerProcess, name: str, **labels: str) -> float:
    """A metric of a process that may not serve /metrics yet (0 then)."""
    return process.metric(name, **labels) if process.get("/metrics") is not None else 0.0


@pytest.fixture
def proxy(rig: Rig) -> Iterator[HoldingProxy]:
    proxy = HoldingProxy(rig.label_studio.url, HOLD_S).start()
    yield proxy
    proxy.close()


def test_a_killed_members_late_import_is_not_doubled_by_the_next_owner(rig: Rig, proxy: HoldingProxy) -> None:
    target = Target(project_name=f"it-late-import-{uuid.uuid4().hex[:8]}")
    events = [prompt_event(target=target) for _ in range(3)]
    expected = {str(e.run_id) for e in events}
    rig.publisher.events(rig.topic, events)
    settings = {
        "LABEL_STUDIO_URL": proxy.url,
        "INGEST_IMPORT_TIMEOUT_S": str(IMPORT_TIMEOUT_S),
        "INGEST_MAX_POLL_INTERVAL_MS": str((IMPORT_TIMEOUT_S + 10) * 1000),
    }
    first = rig.consumer("first", **settings)
    second = rig.consumer("second", **settings)
    try:
        first.start()
        assert proxy.holding.wait(120), first.log_text()
        first.kill()  # SIGKILL while Label Studio has not seen the import yet
        second.start()

        # the next owner restores the ledger, finds the runs uncertain and waits, not an outage
        eventually(
            lambda: metric(second, "ingest_uncertain_waits_total") >= 1 or proxy.released.is_set(),
            timeout=120,
            message="the next owner never processed the batch",
        )
        if not proxy.released.is_set():
            assert second.is_ready(), second.get("/readyz")

        assert proxy.released.wait(120), "the held import was never forwarded"
        project = project_titled(rig.ls_client, target.project_name or "")
        assert project is not None
        eventually(
            lambda: metric(second, "ingest_uncertain_checks_total") >= len(events),
            timeout=120,
            message="the next owner never asked Label Studio",
        )
        eventually(  # the next owner's batch is done: every run imported by it or found in Label Studio
            lambda: (
                metric(second, "ingest_runs_imported_total")
                + metric(second, "ingest_duplicates_skipped_total", source="label_studio")
                >= len(events)
            ),
            timeout=120,
            message="the next owner never finished its batch",
        )
        assert set(run_ids_of(rig.ls_client, project.id)) == expected
        eventually(second.is_ready, timeout=60, message="the next owner is not ready")
        counts = Counter(run_ids_of(rig.ls_client, project.id))
        assert counts == dict.fromkeys(expected, 1), f"runs imported twice: {counts}"
        assert proxy.lookups_while_holding == 0  # nobody asked before the held request was applied

        assert second.metric("ingest_uncertain_waits_total") == 1
        assert second.metric("ingest_uncertain_wait_seconds_total") > 0
        assert second.metric("ingest_duplicates_skipped_total", source="label_studio") == len(events)
        assert second.metric("ingest_label_studio_errors_total") == 0
        assert second.metric("ingest_label_studio_retries_total") == 0
        waits = [e for e in second.log_entries() if str(e.get("msg")).startswith("uncertain runs too")]
        assert len(waits) == 1
        assert waits[0]["runs"] == len(events)
        assert second.terminate() == 0
    finally:
        first.kill()
        second.kill()

"""One HTTP port: ``/metrics`` (Prometheus), ``/healthz`` (alive), ``/readyz`` (ready to work).

It serves nothing else: any other path is 404, any method but ``GET`` is 405, error pages are one
JSON line without server details, and an idle connection is closed after :data:`IDLE_TIMEOUT_S`
so slow clients cannot pile up threads. Request bodies are never read.

The server runs in a daemon thread. Readiness is a callable the application supplies; it is
called per request and returns ``(ready, details)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from labelstudio_ingest.consumer.http_server import BackgroundHTTPServer

Readiness = Callable[[], tuple[bool, dict[str, Any]]]

IDLE_TIMEOUT_S = 30.0
"""A connection that sends nothing for this long is closed (Prometheus scrapes take well under it)."""


class HealthServer(BackgroundHTTPServer):
    """Serves metrics and probes on ``host:port`` until :meth:`stop`."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, readiness: Readiness) -> None:
        super().__init__(host, port, _handler(registry, readiness), name="health-http")


def _handler(registry: CollectorRegistry, readiness: Readiness) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "labelstudio-ingest"
        sys_version = ""  # no Python version in the Server header
        timeout = IDLE_TIMEOUT_S
        error_content_type = "application/json"
        error_message_format = '{"status": "%(code)d"}'

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._send(200, encoder(registry), content_type)
            elif path == "/healthz":
                self._json(200, {"status": "ok"})
            elif path == "/readyz":
                try:
                    ready, details = readiness()
                except Exception as exc:  # a probe must answer, not crash the server thread
                    ready, details = False, {"error": type(exc).__name__}
                self._json(200 if ready else 503, {"status": "ready" if ready else "not ready", **details})
            else:
                self._json(404, {"status": "not found"})

        def _not_allowed(self) -> None:
            self.close_connection = True  # a body we never read must not be parsed as the next request
            self.send_response(405)
            self.send_header("Allow", "GET")
            body = b'{"status": "method not allowed"}'
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed

        def _json(self, status: int, body: dict[str, Any]) -> None:
            self._send(status, json.dumps(body).encode(), "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Probes every few seconds are not worth a log line."""

    return Handler


__all__ = ["HealthServer", "Readiness"]

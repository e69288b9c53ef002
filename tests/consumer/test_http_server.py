"""The bounds every HTTP port of the consumer shares (health and webhooks), over real sockets."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import httpx
import pytest

from labelstudio_ingest.consumer.http_server import BackgroundHTTPServer


class Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served() -> Iterator[tuple[int, list[int]]]:
    busy: list[int] = []
    server = BackgroundHTTPServer(
        "127.0.0.1",
        0,
        Hello,
        name="test-http",
        request_timeout_s=0.5,
        max_connections=2,
        on_busy=lambda: busy.append(1),
    )
    server.start()
    yield server.port, busy
    server.stop()


def _threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("Thread-"))


def test_a_trickling_client_is_cut_off_at_the_deadline_and_its_thread_ends(
    served: tuple[int, list[int]],
) -> None:
    port, _ = served
    before = _threads()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sent = 0
        with contextlib.suppress(OSError):
            for byte in b"GET / HTTP/1.1\r\n" + b"X-Slow: y\r\n" * 100:
                sock.send(bytes([byte]))
                sent += 1
                time.sleep(0.02)
        assert sent < 1000
    deadline = time.monotonic() + 10
    while _threads() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _threads() == before


def test_the_connection_cap_answers_503_from_the_accepting_thread(served: tuple[int, list[int]]) -> None:
    port, busy = served
    holders = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
    for holder in holders:
        holder.sendall(b"G")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as extra:
        answer = extra.recv(65536)
    assert answer.startswith(b"HTTP/1.1 503")
    assert b"Retry-After: 1" in answer
    assert busy == [1]
    for holder in holders:
        holder.close()
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).text == "ok"

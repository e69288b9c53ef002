"""The webhook endpoint's request handling, with fake Label Studio reads and a fake broker."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from labelstudio_ingest.consumer.metrics import Metrics
from labelstudio_ingest.consumer.webhooks import SECRET_HEADER, WEBHOOK_PATH, FeedbackHook, WebhookServer
from labelstudio_ingest.schemas import FeedbackEvent, decode_feedback, feedback_event_id
from tests.consumer.test_annotations import annotation, choice, rating, textarea
from tests.label_configs import CUSTOM_CONFIG

SECRET = "s3cret-webhook-value"
RUN_ID = "00000000-0000-4000-8000-000000000001"
NOW = datetime(2026, 1, 2, tzinfo=UTC)


class FakeReader:
    def __init__(self) -> None:
        self.tasks: dict[int, dict[str, Any]] = {}
        self.fail = False

    def task(self, task_id: int) -> Mapping[str, Any] | None:
        if self.fail:
            raise ConnectionError("Label Studio is down")
        return self.tasks.get(task_id)

    def project(self, project_id: int) -> tuple[str, str] | None:
        return ("Reviews", CUSTOM_CONFIG) if project_id == 3 else None


class FakeSink:
    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] = []
        self.fail = False

    def publish(self, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        if self.fail:
            raise TimeoutError("no ack")
        self.records.append((key, value, headers))

    def events(self) -> list[FeedbackEvent]:
        return [decode_feedback(value) for _, value, _ in self.records]


@pytest.fixture
def parts() -> tuple[FakeReader, FakeSink, Metrics, FeedbackHook]:
    reader, sink, metrics = FakeReader(), FakeSink(), Metrics()
    hook = FeedbackHook(secret=SECRET, reader=reader, sink=sink, metrics=metrics, clock=lambda: NOW)
    reader.tasks[5] = {
        "id": 5,
        "project": 3,
        "data": {"prompt": "2+2?", "run_id": RUN_ID, "prompt_index": 0},
        "predictions": [{"result": [textarea("5")]}],
        "annotations": [
            annotation([textarea("4"), rating(4), choice("Positive")], id=11, lead_time=3.5),
        ],
    }
    return reader, sink, metrics, hook


def body(action: str = "ANNOTATION_CREATED", annotation_id: int = 11, task_id: int = 5) -> bytes:
    return json.dumps({"action": action, "annotation": {"id": annotation_id, "task": task_id}}).encode()


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_publishes_the_feedback_event(parts: tuple[FakeReader, FakeSink, Metrics, FeedbackHook]) -> None:
    _, sink, metrics, hook = parts
    reply = hook.handle(body())
    assert reply.status == 200
    assert reply.body["status"] == "published"
    ((key, _, headers),) = sink.records
    assert key == RUN_ID.encode()
    assert headers == [("content-type", b"application/json"), ("schema-version", b"1")]
    (event,) = sink.events()
    annotated_at = datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert event.model_dump(mode="json") == {
        "schema_version": 1,
        "event_id": str(feedback_event_id(11, annotated_at)),
        "event_time": "2026-01-02T00:00:00Z",
        "action": "created",
        "run_id": RUN_ID,
        "prompt_index": 0,
        "project": {"id": 3, "title": "Reviews"},
        "task_id": 5,
        "annotation_id": 11,
        "annotated_at": "2026-01-01T10:00:00Z",
        "reviewer_id": 7,
        "cancelled": False,
        "corrected_text": "4",
        "model_response": "5",
        "changed": True,
        "rating": {"name": "rating", "value": 0.8, "raw": 4.0, "max": 5},
        "ratings": [{"name": "rating", "value": 0.8, "raw": 4.0, "max": 5}],
        "choices": {"sentiment": ["Positive"]},
        "lead_time_s": 3.5,
        "textarea": "response",
    }
    assert value(metrics, "ingest_feedback_published_total") == 1
    assert value(metrics, "ingest_webhooks_received_total", action="ANNOTATION_CREATED") == 1


def test_a_version_is_published_once(parts: tuple[FakeReader, FakeSink, Metrics, FeedbackHook]) -> None:
    reader, sink, metrics, hook = parts
    assert hook.handle(body()).body["status"] == "published"
    assert hook.handle(body()).body["status"] == "duplicate"
    assert hook.handle(body("ANNOTATION_UPDATED")).body["status"] == "duplicate"  # same version
    reader.tasks[5]["annotations"][0] = annotation([textarea("four")], id=11, updated="2026-01-01T11:00:00Z")
    reply = hook.handle(body("ANNOTATION_UPDATED"))
    assert reply.body["status"] == "published"
    assert [(e.action, e.corrected_text) for e in sink.events()] == [("created", "4"), ("updated", "four")]
    assert value(metrics, "ingest_feedback_skipped_total", reason="duplicate") == 2


def test_concurrent_duplicates_publish_once(
    parts: tuple[FakeReader, FakeSink, Metrics, FeedbackHook],
) -> None:
    _, sink, _, hook = parts
    replies: list[str] = []
    threads = [
        threading.Thread(target=lambda: replies.append(hook.handle(body()).body["status"])) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(replies) == ["duplicate"] * 7 + ["published"]
    assert len(sink.records) == 1


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "not_json"),
        (b"[1, 2]", "missing_fields"),
        (json.dumps({"action": "ANNOTATION_CREATED"}).encode(), "missing_fields"),
        (
            json.dumps({"action": "ANNOTATION_CREATED", "annotation": {"id": "x", "task": 5}}).encode(),
            "missing_fields",
        ),
    ],
)
def test_malformed_bodies_are_400(
    parts: tuple[FakeReader, FakeSink, Metrics, FeedbackHook], payload: bytes, reason: str
) -> None:
    _, sink, metrics, hook = parts
    reply = hook.handle(payload)
    assert (reply.status, reply.body["reason"]) == (400, reason)
    assert sink.records == []
    assert value(metrics, "ingest_webhooks_refused_total", reason=reason) == 1


def test_skips(parts: tuple[FakeReader, FakeSink, Metrics, FeedbackHook]) -> None:
    reader, sink, metrics, hook = parts
    assert hook.handle(body("PROJECT_UPDATED")).body == {
        "status": "ignored",
        "reason": "ignored_action",
        "action": "PROJECT_UPDATED",
    }
    assert hook.handle(body(task_id=99)).body["reason"] == "task_gone"
    assert hook.handle(body(annotation_id=99)).body["reason"] == "annotation_gone"
    reader.tasks[6] = {**reader.tasks[5], "id": 6, "data": {"prompt": "x"}}
    assert hook.handle(body(task_id=6)).body["reason"] == "not_ingested"
    reader.tasks[7] = {**reader.tasks[5], "id": 7, "annotations": [annotation([], id=12)]}
    assert hook.handle(body(annotation_id=12, task_id=7)).body["reason"] == "empty"
    assert sink.records == []
    assert value(metrics, "ingest_feedback_skipped_total", reason="not_ingested") == 1


def test_cancelled_annotations_are_published_flagged(
    parts: tuple[FakeReader, FakeSink, Metrics, FeedbackHook],
) -> None:
    reader, sink, _, hook = parts
    reader.tasks[5]["annotations"] = [annotation([], id=11, was_cancelled=True)]
    assert hook.handle(body()).body["status"] == "published"
    (event,) = sink.events()
    assert event.cancelled
    assert event.corrected_text is None
    assert event.model_response == "5"


def test_unavailable_label_studio_or_broker_is_503_and_retryable(
    parts: tuple[FakeReader, FakeSink, Metrics, FeedbackHook],
) -> None:
    reader, sink, _, hook = parts
    reader.fail = True
    reply = hook.handle(body())
    assert (reply.status, reply.body["reason"]) == (503, "label_studio_unavailable")
    reader.fail, sink.fail = False, True
    reply = hook.handle(body())
    assert (reply.status, reply.body["reason"]) == (503, "broker_unavailable")
    sink.fail = False
    assert hook.handle(body()).body["status"] == "published"  # the retry is not taken for a duplicate


def test_secret_checks(parts: tuple[FakeReader, FakeSink, Metrics, FeedbackHook]) -> None:
    *_, hook = parts
    assert hook.authorized(SECRET) is None
    missing = hook.authorized(None)
    wrong = hook.authorized("guess")
    assert missing is not None
    assert wrong is not None
    assert (missing.status, wrong.status) == (401, 401)
    assert SECRET not in json.dumps(wrong.body)


@pytest.fixture
def server(parts: tuple[FakeReader, FakeSink, Metrics, FeedbackHook]) -> Iterator[str]:
    *_, hook = parts
    hook.max_body_bytes = 2048
    running = WebhookServer("127.0.0.1", 0, hook)
    running.start()
    yield f"http://127.0.0.1:{running.port}"
    running.stop()


def test_http_statuses(server: str, parts: tuple[FakeReader, FakeSink, Metrics, FeedbackHook]) -> None:
    _, sink, _, _ = parts
    url = server + WEBHOOK_PATH
    auth = {SECRET_HEADER: SECRET}
    assert httpx.post(url, content=body()).status_code == 401
    assert httpx.post(url, content=body(), headers={SECRET_HEADER: "nope"}).status_code == 401
    assert httpx.post(url, content=b"x" * 4096, headers=auth).status_code == 413
    assert httpx.post(url, content=b"{", headers=auth).status_code == 400
    assert httpx.post(server + "/metrics", content=body(), headers=auth).status_code == 404
    response = httpx.get(url, headers=auth)
    assert (response.status_code, response.headers["allow"]) == (405, "POST")
    assert sink.records == []
    response = httpx.post(url, content=body(), headers=auth)
    assert response.status_code == 200
    assert response.json()["run_id"] == RUN_ID
    assert len(sink.records) == 1
    with httpx.Client() as client:  # keep-alive: two requests on one connection
        assert client.post(url, content=body(), headers=auth).json()["status"] == "duplicate"
        assert client.post(url, content=body(), headers=auth).json()["status"] == "duplicate"


def test_event_ids_are_deterministic() -> None:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    assert feedback_event_id(1, moment) == feedback_event_id(1, moment)
    assert feedback_event_id(1, moment) != feedback_event_id(2, moment)
    assert isinstance(feedback_event_id(1, moment), uuid.UUID)


def test_settings_need_a_secret_with_a_port_and_mask_it() -> None:
    from pydantic import ValidationError  # noqa: PLC0415

    from labelstudio_ingest.consumer.settings import Settings  # noqa: PLC0415

    base = {"bootstrap_servers": "k:9092", "label_studio_api_key": "token"}
    with pytest.raises(ValidationError, match="INGEST_WEBHOOK_PORT needs INGEST_WEBHOOK_SECRET"):
        Settings(**base, webhook_port=9465)
    with pytest.raises(ValidationError, match="must differ from INGEST_METRICS_PORT"):
        Settings(**base, webhook_port=9464, webhook_secret="x" * 20)
    settings = Settings(**base, webhook_port=9465, webhook_secret=SECRET)
    assert SECRET in settings.secrets()
    assert settings.feedback_topic == "llm.feedback"


def test_an_unexpected_failure_is_a_500_not_a_dead_connection(
    parts: tuple[FakeReader, FakeSink, Metrics, FeedbackHook],
) -> None:
    reader, sink, metrics, hook = parts
    reader.tasks[5]["id"] = "not a number"
    reply = hook.handle(body())
    assert (reply.status, reply.body["reason"]) == (500, "internal")
    assert sink.records == []
    assert value(metrics, "ingest_webhooks_refused_total", reason="internal") == 1


# --- slow, malformed and too many clients, over real sockets --------------------------------------------


@pytest.fixture
def bounded(parts: tuple[FakeReader, FakeSink, Metrics, FeedbackHook]) -> Iterator[tuple[int, Metrics]]:
    """An endpoint with a short request deadline and room for two requests at once."""
    _, _, metrics, hook = parts
    running = WebhookServer("127.0.0.1", 0, hook, request_timeout_s=0.5, max_connections=2)
    running.start()
    yield running.port, metrics
    running.stop()


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _answer(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def test_headers_sent_byte_by_byte_lose_the_connection_at_the_deadline(bounded: tuple[int, Metrics]) -> None:
    port, _ = bounded
    request = f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\n{SECRET_HEADER}: {SECRET}\r\n".encode() * 20
    sock = _connect(port)
    sent = 0
    with contextlib.suppress(OSError):  # the server closed: the next send fails
        for byte in request:
            sock.send(bytes([byte]))
            sent += 1
            time.sleep(0.02)
    assert sent < len(request)  # the server gave up before the client finished its headers
    sock.close()


def test_a_body_that_never_finishes_is_408_and_closed(bounded: tuple[int, Metrics]) -> None:
    port, metrics = bounded
    sock = _connect(port)
    head = (
        f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\n{SECRET_HEADER}: {SECRET}\r\nContent-Length: 100\r\n\r\n"
    )
    sock.sendall(head.encode() + b'{"action": ')
    answer = _answer(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert value(metrics, "ingest_webhooks_refused_total", reason="timeout") == 1


def test_requests_beyond_the_cap_are_503_and_the_slots_come_back(
    parts: tuple[FakeReader, FakeSink, Metrics, FeedbackHook],
) -> None:
    _, sink, metrics, hook = parts
    running = WebhookServer("127.0.0.1", 0, hook, request_timeout_s=30, max_connections=2)
    running.start()
    try:
        holders = [_connect(running.port) for _ in range(2)]  # connected, sending nothing
        holders[0].send(b"P")
        holders[1].send(b"P")
        extra = _connect(running.port)
        answer = _answer(extra)
        extra.close()
        assert answer.startswith(b"HTTP/1.1 503")
        assert b'"reason": "busy"' in answer
        assert value(metrics, "ingest_webhooks_refused_total", reason="busy") == 1
        for holder in holders:
            holder.close()
        url = f"http://127.0.0.1:{running.port}{WEBHOOK_PATH}"
        response = httpx.post(url, content=body(), headers={SECRET_HEADER: SECRET})
        assert response.status_code == 200  # the slots were released
        assert len(sink.records) == 1
    finally:
        running.stop()


def test_a_malformed_request_is_answered_without_echoing_it(bounded: tuple[int, Metrics]) -> None:
    port, _ = bounded
    sock = _connect(port)
    sock.sendall(b"GET /<script>alert(1)</script> HTTP/1.1 and-more\r\n\r\n")
    answer = _answer(sock)
    sock.close()
    assert answer.endswith(b'"code": 400}')  # a bad request line gets an HTTP/0.9 answer: the body
    assert b"script" not in answer
    assert b"Python" not in answer


def test_answers_name_a_reason_not_the_exception_text(
    parts: tuple[FakeReader, FakeSink, Metrics, FeedbackHook],
) -> None:
    reader, sink, _, hook = parts
    reader.fail = True
    reply = hook.handle(body())
    sink.fail, reader.fail = True, False
    broker = hook.handle(body())
    bad = hook.handle(b"\xff{not json")
    for answer in (reply, broker, bad):
        text = json.dumps(answer.body)
        assert "Label Studio is down" not in text
        assert "no ack" not in text
        assert "Error" not in text

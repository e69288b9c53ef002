"""The Label Studio token stays in the consumer: never in logs, metrics, dead letters or error messages.

Two consumers are watched: one doing ordinary work against the real Label Studio (imports, a
rejected import, an unknown project), and one facing a hostile "Label Studio" that echoes the
request's ``Authorization`` header in every error body, as some proxies and debug pages do.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from labelstudio_ingest.consumer import deadletter as dl
from labelstudio_ingest.consumer.labelconfig import default_config
from labelstudio_ingest.schemas import Target
from tests.consumer.runner import ConsumerProcess, Rig, eventually, prompt_event, read_topic
from tests.harness import free_port

pytestmark = pytest.mark.integration

NEEDS_MORE_DATA = (
    '<View><Text name="prompt" value="$prompt"/><Text name="ctx" value="$context"/>'
    '<TextArea name="response" toName="prompt"/></View>'
)


def _everything_seen(consumer: ConsumerProcess, dead_letters: list[Any]) -> str:
    """Logs, the metrics page and every byte of every dead letter, as one text to search."""
    metrics = consumer.get("/metrics")
    parts = [consumer.log_text(), metrics.text if metrics is not None else ""]
    for record in dead_letters:
        parts.append(repr(record.key) + repr(record.value))
        parts.extend(f"{k}={v!r}" for k, v in record.headers)
    return "\n".join(parts)


def _assert_absent(secret: str, text: str) -> None:
    assert secret not in text
    assert json.dumps(secret)[1:-1] not in text
    assert secret[:12] not in text, "a prefix of the token leaked"


def test_token_absent_from_logs_metrics_and_dead_letters(rig: Rig) -> None:
    token = rig.label_studio.api_key
    good = prompt_event(target=Target(project_name=f"secret-{uuid.uuid4().hex[:8]}"))
    rejected_project = rig.ls_client.projects.create(
        title=f"secret-rej-{uuid.uuid4().hex[:6]}", label_config=NEEDS_MORE_DATA
    )
    rejected = prompt_event(target=Target(project_id=rejected_project.id))
    unknown = prompt_event(target=Target(project_id=987_123))
    rig.publisher.events(rig.topic, [good, rejected, unknown])
    consumer = rig.consumer(INGEST_LOG_LEVEL="DEBUG").start()
    try:
        consumer.wait_ready()
        dead = read_topic(rig.bootstrap, f"{rig.topic}.dlq", expect=2)
        assert {dl.header(list(r.headers), dl.H_REASON) for r in dead} == {
            "import_rejected",
            "unknown_project",
        }
        eventually(lambda: consumer.metric("ingest_tasks_imported_total") >= 1, message="good task")
        assert consumer.terminate() == 0
        seen = _everything_seen(consumer, dead)
        assert "import_rejected" in seen  # the search covers what it should
        _assert_absent(token, seen)
    finally:
        consumer.kill()
        rig.ls_client.projects.delete(id=rejected_project.id)


class _EchoingLabelStudio(BaseHTTPRequestHandler):
    """Answers like a misbehaving Label Studio: errors whose bodies repeat the request headers."""

    config = default_config("prompt")

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _echo(self) -> str:
        return f"debug: you sent {dict(self.headers)}"

    def do_GET(self) -> None:
        if self.path.startswith("/health"):
            self._send(200, {"status": "UP"})
        elif match := re.fullmatch(r"/api/projects/(\d+)/?", self.path):
            self._send(200, {"id": int(match[1]), "title": "echo", "label_config": self.config})
        else:
            self._send(500, {"detail": self._echo()})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if re.fullmatch(r"/api/projects/\d+/import.*", self.path):
            self._send(400, {"detail": self._echo()})
        else:
            self._send(500, {"detail": self._echo()})

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def echoing_label_studio() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _EchoingLabelStudio)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_token_echoed_by_the_server_is_masked_everywhere(rig: Rig, echoing_label_studio: str) -> None:
    token = f"tok{uuid.uuid4().hex}{uuid.uuid4().hex}"
    by_id = prompt_event(target=Target(project_id=42))  # the import is refused: 400 echoing the token
    by_name = prompt_event(target=Target(project_name="echo-title"))  # the lookup fails: 500 echoing it
    rig.publisher.events(rig.topic, [by_id])
    consumer = ConsumerProcess.configured(
        rig.tmp_path,
        bootstrap=rig.bootstrap,
        label_studio=type("Echo", (), {"url": echoing_label_studio, "api_key": token})(),
        topic=rig.topic,
        name="echoed",
        INGEST_LOG_LEVEL="DEBUG",
    ).start()
    try:
        consumer.wait_ready()
        dead = read_topic(rig.bootstrap, f"{rig.topic}.dlq", expect=1)
        assert [dl.header(list(r.headers), dl.H_REASON) for r in dead] == ["import_rejected"]
        rig.publisher.events(rig.topic, [by_name])  # then Label Studio "fails": retried, never dropped
        eventually(lambda: "you sent" in consumer.log_text(), message="the 500 bodies are logged")
        eventually(lambda: consumer.metric("ingest_label_studio_errors_total") >= 1, message="LS errors")
        seen = _everything_seen(consumer, dead)
        assert "***" in dl.header(list(dead[0].headers), dl.H_MESSAGE)  # the echo arrived, masked
        _assert_absent(token, seen)
    finally:
        consumer.kill()
    _assert_absent(token, consumer.log_text())

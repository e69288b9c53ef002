"""The Label Studio token stays in the consumer: never in logs, metrics, dead letters or error messages.

Two consumers are watched: one doing ordinary work against the real Label Studio (imports, a
rejected import, an unknown project), and one facing a hostile "Label Studio" that echoes the
request's ``Authorization`` header in every error body, as some proxies and debug pages do.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from labelstudio_ingest.consumer import deadletter as dl
from labelstudio_ingest.consumer.labelconfig import default_config
from labelstudio_ingest.consumer.webhooks import SECRET_HEADER, WEBHOOK_PATH
from labelstudio_ingest.schemas import Target
from tests.consumer.runner import ConsumerProcess, Rig, eventually, prompt_event, read_topic
from tests.harness import free_port
from tests.integration.test_hostile_input import HOSTILE_CONFIGS

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
    echo = type("Echo", (), {"url": echoing_label_studio, "api_key": token})()
    port = free_port()
    consumer = ConsumerProcess.configured(
        rig.tmp_path,
        bootstrap=rig.bootstrap,
        label_studio=echo,
        topic=rig.topic,
        name="echoed",
        INGEST_LOG_LEVEL="DEBUG",
        INGEST_WEBHOOK_PORT=str(port),
        INGEST_WEBHOOK_SECRET=WEBHOOK_SECRET,
        INGEST_FEEDBACK_TOPIC=f"{rig.topic}.feedback",
    ).start()
    try:
        consumer.wait_ready()
        dead = read_topic(rig.bootstrap, f"{rig.topic}.dlq", expect=1)
        assert [dl.header(list(r.headers), dl.H_REASON) for r in dead] == ["import_rejected"]
        rig.publisher.events(rig.topic, [by_name])  # then Label Studio "fails": retried, never dropped
        eventually(lambda: "you sent" in consumer.log_text(), message="the 500 bodies are logged")
        eventually(lambda: consumer.metric("ingest_label_studio_errors_total") >= 1, message="LS errors")
        # the webhook endpoint fetches the task: the "Label Studio" answers 500 echoing the token
        hook = httpx.post(
            f"http://127.0.0.1:{port}{WEBHOOK_PATH}",
            json={"action": "ANNOTATION_CREATED", "annotation": {"id": 1, "task": 5}},
            headers={SECRET_HEADER: WEBHOOK_SECRET},
            timeout=30,
        )
        assert (hook.status_code, hook.json()["reason"]) == (503, "label_studio_unavailable")
        exported = _export(echo, rig.tmp_path / "echo.jsonl", "42")  # the task listing echoes it too
        assert exported.startswith("1\n")
        seen = "\n".join([_everything_seen(consumer, dead), hook.text, str(dict(hook.headers)), exported])
        assert "***" in dl.header(list(dead[0].headers), dl.H_MESSAGE)  # the echo arrived, masked
        _assert_absent(token, seen)
    finally:
        consumer.kill()
    _assert_absent(token, consumer.log_text())


# --- after the hostile suite: logs, dead letters, metrics, webhook answers and exports ------------------

WEBHOOK_SECRET = "hook-" + uuid.uuid4().hex


def _webhook_answers(port: int, task_id: int) -> list[str]:
    """Every kind of call the endpoint refuses or skips, and the raw answers it gave."""
    url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
    auth = {SECRET_HEADER: WEBHOOK_SECRET}
    calls: list[tuple[dict[str, str], bytes]] = [
        ({}, b'{"action": "ANNOTATION_CREATED", "annotation": {"id": 1, "task": 1}}'),
        ({SECRET_HEADER: "wrong"}, b"{}"),
        (auth, b"{not json"),
        (auth, b'{"action": "ANNOTATION_CREATED"}'),
        (
            auth,
            json.dumps({"action": "ANNOTATION_CREATED", "annotation": {"id": 1, "task": 987_654}}).encode(),
        ),
        (
            auth,
            json.dumps({"action": "ANNOTATION_UPDATED", "annotation": {"id": 1, "task": task_id}}).encode(),
        ),
        (auth, b"x" * 5_000_000),
    ]
    answers = []
    for headers, body in calls:
        response = httpx.post(url, content=body, headers=headers, timeout=30)
        answers.append(f"{response.status_code} {dict(response.headers)} {response.text}")
    answers.append(repr(httpx.get(url, headers=auth, timeout=30).text))
    unfinished = (
        f"POST {WEBHOOK_PATH} HTTP/1.1\r\n{SECRET_HEADER}: {WEBHOOK_SECRET}\r\nContent-Length: 50\r\n\r\n{{"
    )
    for raw in (
        unfinished.encode(),
        b"GET /<script> HTTP/1.1 extra\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(raw)
            chunks = []
            with contextlib.suppress(ConnectionResetError):
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            answers.append(repr(b"".join(chunks)))
    return answers


def _export(label_studio: Any, out: Path, project: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INGEST_", "KAFKA_", "LABEL_STUDIO_"))}
    env.update(LABEL_STUDIO_URL=label_studio.url, LABEL_STUDIO_API_KEY=label_studio.api_key)
    done = subprocess.run(
        [
            *(sys.executable, "-m", "labelstudio_ingest.consumer.cli", "export", "--format", "sft"),
            *("--project", project, "--out", str(out)),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    written = out.read_text() if out.exists() else ""
    return f"{done.returncode}\n{done.stdout}\n{done.stderr}\n{written}"


def test_token_absent_everywhere_after_the_hostile_suite(rig: Rig) -> None:
    token = rig.label_studio.api_key
    prefix = f"secret-{uuid.uuid4().hex[:6]}"
    rejected_project = rig.ls_client.projects.create(title=f"{prefix}-rej", label_config=NEEDS_MORE_DATA)
    good = prompt_event(target=Target(project_name=f"{prefix}-new-good"))
    hostile = [
        prompt_event(target=Target(project_name=f"{prefix}-new-{kind}"[:50], project_config=xml))
        for kind, xml in HOSTILE_CONFIGS.items()
    ]
    refused = [
        prompt_event(target=Target(project_id=rejected_project.id)),  # import_rejected
        prompt_event(target=Target(project_id=987_123)),  # not_allowed
        prompt_event(target=Target(project_name="elsewhere")),  # not_allowed
        prompt_event(target=Target(project_name=f"{prefix}-manual")),  # not creatable: not_allowed
        prompt_event(target=Target(project_name=f"{prefix}-new-over-cap")),  # project_limit (or good is)
    ]
    rig.publisher.events(rig.topic, [good, *hostile, *refused])
    rig.publisher.raw(rig.topic, b"\xff\xfe not json " + token[:4].encode(), key=b"garbage")
    port = free_port()
    consumer = rig.consumer(
        INGEST_LOG_LEVEL="DEBUG",
        INGEST_ALLOWED_PROJECT_NAMES=f"{prefix}-*",
        INGEST_ALLOWED_PROJECT_IDS=str(rejected_project.id),
        INGEST_CREATE_PROJECT_NAMES=f"{prefix}-new-*",
        INGEST_MAX_PROJECTS_PER_HOUR="1",
        INGEST_WEBHOOK_PORT=str(port),
        INGEST_WEBHOOK_SECRET=WEBHOOK_SECRET,
        INGEST_WEBHOOK_REQUEST_TIMEOUT_S="1",
        INGEST_FEEDBACK_TOPIC=f"{rig.topic}.feedback",
    ).start()
    try:
        consumer.wait_ready()
        dead = read_topic(rig.bootstrap, f"{rig.topic}.dlq", expect=len(hostile) + len(refused) + 1)
        reasons = {dl.header(list(r.headers), dl.H_REASON) for r in dead}
        assert {
            "unsafe_label_config",
            "import_rejected",
            "not_allowed",
            "project_limit",
            "not_utf8",
        } <= reasons
        project = eventually(
            lambda: next(iter(rig.ls_client.projects.list(title=f"{prefix}-new-", page_size=10)), None),
            message="the one project created",
        )
        task = eventually(
            lambda: next(iter(rig.ls_client.tasks.list(project=project.id)), None), message="task"
        )
        answers = _webhook_answers(port, task.id)
        assert any(a.startswith("401") for a in answers)  # the calls reached the endpoint
        assert any("408" in a for a in answers)
        exports = _export(rig.label_studio, rig.tmp_path / "out.jsonl", str(project.id))
        exports += _export(rig.label_studio, rig.tmp_path / "none.jsonl", "no-such-project")
        seen = _everything_seen(consumer, dead)
        assert consumer.terminate() == 0
    finally:
        consumer.kill()
        rig.ls_client.projects.delete(id=rejected_project.id)
    everything = "\n".join([seen, consumer.log_text(), *answers, exports])
    assert "unsafe_label_config" in everything  # the search covers what it should
    _assert_absent(token, everything)
    _assert_absent(WEBHOOK_SECRET, everything)

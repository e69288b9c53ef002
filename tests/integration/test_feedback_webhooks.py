"""Live feedback: Label Studio's webhooks → the consumer's endpoint → the feedback topic, all real."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from labelstudio_ingest.consumer.webhooks import SECRET_HEADER, WEBHOOK_PATH
from labelstudio_ingest.schemas import FeedbackEvent, Target, decode_feedback
from tests.consumer.runner import Rig, eventually, project_titled, prompt_event, read_topic, tasks_of
from tests.harness import free_port
from tests.label_configs import CUSTOM_CONFIG

pytestmark = pytest.mark.integration

SECRET = "webhook-secret-" + uuid.uuid4().hex


def textarea(text: str) -> dict[str, Any]:
    return {"from_name": "response", "to_name": "prompt", "type": "textarea", "value": {"text": [text]}}


def rating(stars: int) -> dict[str, Any]:
    return {"from_name": "rating", "to_name": "prompt", "type": "rating", "value": {"rating": stars}}


def sentiment(value: str) -> dict[str, Any]:
    return {"from_name": "sentiment", "to_name": "prompt", "type": "choices", "value": {"choices": [value]}}


def install(rig: Rig, project: str, url: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INGEST_", "KAFKA_", "LABEL_STUDIO_"))}
    env.update(
        LABEL_STUDIO_URL=rig.label_studio.url,
        LABEL_STUDIO_API_KEY=rig.label_studio.api_key,
        INGEST_WEBHOOK_SECRET=SECRET,
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "labelstudio_ingest.consumer.cli",
            "webhooks",
            "install",
            "--project",
            project,
            "--url",
            url,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stdout + done.stderr
    return done.stdout


def feedback(rig: Rig, topic: str, expect: int, timeout: float = 30.0) -> list[FeedbackEvent]:
    return [
        decode_feedback(r.value) for r in read_topic(rig.bootstrap, topic, expect=expect, timeout=timeout)
    ]


def test_annotations_become_feedback_events_once_each(rig: Rig, kafka_topic: Callable[..., str]) -> None:
    client = rig.ls_client
    feedback_topic = kafka_topic(partitions=2)
    port = free_port()
    consumer = rig.consumer(
        INGEST_WEBHOOK_PORT=str(port),
        INGEST_WEBHOOK_HOST="127.0.0.1",
        INGEST_WEBHOOK_SECRET=SECRET,
        INGEST_FEEDBACK_TOPIC=feedback_topic,
        INGEST_WEBHOOK_MAX_CONNECTIONS="3",
        INGEST_WEBHOOK_REQUEST_TIMEOUT_S="5",
    )
    title = f"fb-hooks-{uuid.uuid4().hex[:8]}"
    run = prompt_event(
        target=Target(project_name=title, project_config=CUSTOM_CONFIG),
        prompts=["2+2?", "3+3?"],
        answer="model",
    )
    rig.publisher.events(rig.topic, [run])
    try:
        consumer.start().wait_ready()
        project = eventually(lambda: project_titled(client, title), message="project")
        eventually(lambda: len(tasks_of(client, project.id)) == 2, message="two tasks")
        tasks = {t.data["prompt_index"]: t for t in tasks_of(client, project.id)}

        url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
        assert "created" in install(rig, title, url)
        assert "unchanged" in install(rig, str(project.id), url)
        assert "updated" in install(rig, title, url + "?moved")  # a new URL updates ours, adds none
        assert "updated" in install(rig, title, url)
        hooks = [w for w in client.webhooks.list(project=str(project.id)) if w.project == project.id]
        assert len(hooks) == 1
        assert sorted(hooks[0].actions) == ["ANNOTATION_CREATED", "ANNOTATION_UPDATED"]

        first = client.annotations.create(
            id=tasks[0].id, result=[textarea("4"), rating(4), sentiment("Positive")]
        )
        client.annotations.create(id=tasks[1].id, result=[textarea("model (1)"), rating(1)])
        client.annotations.update(id=first.id, result=[textarea("Four."), rating(5), sentiment("Positive")])
        # a task the consumer did not create: answered, counted, not published
        client.projects.import_tasks(id=project.id, request=[{"data": {"prompt": "not ours"}}])
        stranger = next(t for t in tasks_of(client, project.id) if "run_id" not in t.data)
        client.annotations.create(id=stranger.id, result=[textarea("x")])

        events = feedback(rig, feedback_topic, expect=3)
        assert len(events) == 3
        by_key = {(e.task_id, e.action): e for e in events}
        created = by_key[(tasks[0].id, "created")]
        assert created.run_id == run.run_id
        assert created.project.id == project.id
        assert created.project.title == title
        assert created.annotation_id == first.id
        assert (created.corrected_text, created.model_response, created.changed) == ("4", "model (0)", True)
        assert created.rating is not None
        assert (created.rating.value, created.rating.raw, created.rating.max) == (0.8, 4.0, 5)
        assert created.choices == {"sentiment": ["Positive"]}
        assert created.reviewer_id is not None
        assert not created.cancelled
        updated = by_key[(tasks[0].id, "updated")]
        assert (updated.corrected_text, updated.rating and updated.rating.value) == ("Four.", 1.0)
        assert updated.annotation_id == first.id
        assert updated.event_id != created.event_id
        unchanged = by_key[(tasks[1].id, "created")]
        assert (unchanged.changed, unchanged.rating and unchanged.rating.value) == (False, 0.2)

        # the same version delivered again (a replayed webhook) is not published again
        replay = {"action": "ANNOTATION_UPDATED", "annotation": {"id": first.id, "task": tasks[0].id}}
        response = httpx.post(url, json=replay, headers={SECRET_HEADER: SECRET}, timeout=30)
        assert (response.status_code, response.json()["status"]) == (200, "duplicate")

        # refused calls publish nothing and say why
        response = httpx.post(url, json=replay, timeout=30)
        assert (response.status_code, response.json()["reason"]) == (401, "unauthorized")
        response = httpx.post(url, json=replay, headers={SECRET_HEADER: "wrong"}, timeout=30)
        assert response.status_code == 401
        response = httpx.post(url, content=b"{oops", headers={SECRET_HEADER: SECRET}, timeout=30)
        assert (response.status_code, response.json()["reason"]) == (400, "not_json")
        response = httpx.post(
            url, json={"action": "ANNOTATION_CREATED"}, headers={SECRET_HEADER: SECRET}, timeout=30
        )
        assert (response.status_code, response.json()["reason"]) == (400, "missing_fields")
        # the metrics port serves only metrics and probes
        assert httpx.get(consumer.url(WEBHOOK_PATH), timeout=10).status_code == 404

        # slow clients hold a connection slot until the request deadline, never a fourth one
        holders = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(3)]
        for holder in holders:
            holder.sendall(f"POST {WEBHOOK_PATH} HTTP/1.1\r\n{SECRET_HEADER}: ".encode())  # never finished
        response = httpx.post(url, json=replay, headers={SECRET_HEADER: SECRET}, timeout=30)
        assert (response.status_code, response.json()["reason"]) == (503, "busy")
        assert [holder.recv(1024) for holder in holders] == [b"", b"", b""]  # closed at the deadline
        for holder in holders:
            holder.close()
        response = httpx.post(url, json=replay, headers={SECRET_HEADER: SECRET}, timeout=30)
        assert (response.status_code, response.json()["status"]) == (200, "duplicate")
        assert consumer.metric("ingest_webhooks_refused_total", reason="busy") == 1

        assert len(feedback(rig, feedback_topic, expect=4, timeout=5)) == 3
        assert consumer.metric("ingest_feedback_published_total") == 3
        assert consumer.metric("ingest_feedback_skipped_total", reason="not_ingested") == 1
        assert consumer.metric("ingest_feedback_skipped_total", reason="duplicate") == 2
        assert consumer.metric("ingest_webhooks_refused_total", reason="unauthorized") == 2
        assert SECRET not in consumer.log_text()
        assert rig.label_studio.api_key not in consumer.log_text()
        logged = [json.loads(line) for line in consumer.log_text().splitlines() if line.startswith("{")]
        assert sum(1 for entry in logged if entry.get("msg") == "published feedback") == 3
    finally:
        consumer.kill()


def test_webhooks_serve_alone(rig: Rig, kafka_topic: Callable[..., str]) -> None:
    """``webhooks serve``: the endpoint on its port, metrics on theirs, a clean exit on SIGTERM."""
    feedback_topic = f"{kafka_topic()}.feedback"  # missing: created at start-up
    port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INGEST_", "KAFKA_", "LABEL_STUDIO_"))}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=rig.bootstrap,
        LABEL_STUDIO_URL=rig.label_studio.url,
        LABEL_STUDIO_API_KEY=rig.label_studio.api_key,
        INGEST_WEBHOOK_SECRET=SECRET,
        INGEST_FEEDBACK_TOPIC=feedback_topic,
        INGEST_METRICS_HOST="127.0.0.1",
    )
    argv = [sys.executable, "-m", "labelstudio_ingest.consumer.cli", "webhooks", "serve"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "INGEST_WEBHOOK_PORT" in done.stderr
    log_path = rig.tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                *argv,
                "--webhook-port",
                str(port),
                "--webhook-host",
                "127.0.0.1",
                "--metrics-port",
                str(metrics_port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"

        def answers() -> bool:
            try:
                return httpx.post(url, json={}, timeout=5).status_code == 401
            except httpx.HTTPError:
                return False

        eventually(answers, message=f"endpoint not answering: {log_path.read_text(errors='replace')}")
        missing = {"action": "ANNOTATION_CREATED", "annotation": {"id": 10**9, "task": 10**9}}
        response = httpx.post(url, json=missing, headers={SECRET_HEADER: SECRET}, timeout=30)
        assert response.json() == {"status": "skipped", "reason": "task_gone", "task_id": 10**9}
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        assert 'ingest_webhooks_refused_total{reason="unauthorized"} 1.0' in metrics
        assert 'ingest_feedback_skipped_total{reason="task_gone"} 1.0' in metrics
        proc.terminate()
        assert proc.wait(timeout=30) == 0
        assert SECRET not in log_path.read_text(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)

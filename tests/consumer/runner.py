"""Helpers for tests against real servers: the consumer as a subprocess, topics, publishing, reading.

The consumer runs as ``python -m labelstudio_ingest.consumer.cli consume`` so tests can SIGTERM it
and SIGKILL it like an orchestrator would. Everything binds 127.0.0.1 on free ports.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from labelstudio_ingest.schemas import ChatEvent, PromptEvent, Target, encode, event_headers, event_key
from tests.harness import KAFKA_TEST_CONSUMER_DEFAULTS, free_port, wait_until

CONSUMER_ENV = {
    "INGEST_MAX_POLL_INTERVAL_MS": str(KAFKA_TEST_CONSUMER_DEFAULTS["max_poll_interval_ms"]),
    "INGEST_SESSION_TIMEOUT_MS": str(KAFKA_TEST_CONSUMER_DEFAULTS["session_timeout_ms"]),
    "INGEST_HEARTBEAT_INTERVAL_MS": str(KAFKA_TEST_CONSUMER_DEFAULTS["heartbeat_interval_ms"]),
    "INGEST_IMPORT_TIMEOUT_S": "4",
    "INGEST_BACKOFF_INITIAL_S": "0.2",
    "INGEST_BACKOFF_MAX_S": "2",
    "INGEST_BATCH_MAX_WAIT_MS": "200",
    "INGEST_SHUTDOWN_TIMEOUT_S": "10",
    "INGEST_METRICS_HOST": "127.0.0.1",
    "INGEST_LOG_LEVEL": "INFO",
}
"""The harness's short group timeouts (joins take about max.poll.interval) and quick retries."""


def eventually(check: Callable[[], Any], *, timeout: float = 60.0, message: str = "condition not met") -> Any:
    """``harness.wait_until`` at a pace that suits Label Studio queries (every half second)."""
    return wait_until(check, timeout, 0.5, message)


# --- Kafka ----------------------------------------------------------------------------------------
class Publisher:
    """Publishes events (or raw records) the way the producer does: key = run_id, contract headers."""

    def __init__(self, bootstrap: str) -> None:
        self._producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)

    def events(self, topic: str, events: Iterable[PromptEvent | ChatEvent]) -> None:
        for event in events:
            self._producer.send(
                topic, key=event_key(event), value=encode(event), headers=event_headers(event)
            )
        self._producer.flush()

    def raw(
        self, topic: str, value: bytes | None, *, key: bytes | None = None, headers: Sequence[Any] = ()
    ) -> None:
        self._producer.send(topic, key=key, value=value, headers=list(headers))
        self._producer.flush()

    def close(self) -> None:
        self._producer.close()


def read_topic(bootstrap: str, topic: str, *, expect: int, timeout: float = 30.0) -> list[Any]:
    """Every record of ``topic`` from the start, waiting until there are at least ``expect``."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        partitions = eventually(lambda: consumer.partitions_for_topic(topic), message=f"no topic {topic}")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(records) < expect and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


# --- events ---------------------------------------------------------------------------------------
def prompt_event(
    *,
    target: Target,
    run_id: uuid.UUID | None = None,
    prompts: Sequence[str] = ("What is 2+2?",),
    answer: str = "4",
    model: str = "fake-llm",
) -> PromptEvent:
    return PromptEvent(
        schema_version=1,
        event_id=uuid.uuid4(),
        run_id=run_id or uuid.uuid4(),
        event_time=datetime.now(UTC),
        kind="prompt",
        prompts=list(prompts),
        generations=[[{"text": f"{answer} ({i})"}] for i in range(len(prompts))],  # type: ignore[misc]
        model_name=model,
        target=target,
    )


def chat_event(*, target: Target, run_id: uuid.UUID | None = None) -> ChatEvent:
    return ChatEvent.model_validate(
        {
            "schema_version": 1,
            "event_id": str(uuid.uuid4()),
            "run_id": str(run_id or uuid.uuid4()),
            "event_time": datetime.now(UTC).isoformat(),
            "kind": "chat",
            "messages": [
                [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Capital of France?"},
                ]
            ],
            "generations": [[{"text": "Paris."}]],
            "model_name": "fake-chat",
            "target": target.model_dump(exclude_none=True),
        }
    )


# --- Label Studio ---------------------------------------------------------------------------------
def project_titled(client: Any, title: str) -> Any | None:
    """The project with exactly this title (lowest id), or None."""
    found = [p for p in client.projects.list(title=title, page_size=100) if p.title == title]
    return min(found, key=lambda p: p.id) if found else None


def tasks_of(client: Any, project_id: int) -> list[Any]:
    """Every task of a project, with its predictions."""
    return list(client.tasks.list(project=project_id, page_size=1000, fields="all"))


def run_ids_of(client: Any, project_id: int) -> list[str]:
    return [t.data["run_id"] for t in tasks_of(client, project_id)]


# --- the consumer process -------------------------------------------------------------------------
@dataclass
class ConsumerProcess:
    """``labelstudio-ingest consume`` in a subprocess, logs in a file, metrics on a free port."""

    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def configured(
        cls,
        tmp_path: Path,
        *,
        bootstrap: str,
        label_studio: Any,
        topic: str,
        group: str | None = None,
        name: str = "consumer",
        **extra: str,
    ) -> ConsumerProcess:
        env = {
            **CONSUMER_ENV,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "LABEL_STUDIO_URL": label_studio.url,
            "LABEL_STUDIO_API_KEY": label_studio.api_key,
            "INGEST_TOPIC": topic,
            "INGEST_GROUP_ID": group or f"group-{topic}",
            **extra,
        }
        return cls(env, tmp_path / f"{name}.log")

    def start(self, **extra: str) -> ConsumerProcess:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("INGEST_", "KAFKA_", "LABEL_STUDIO_"))
        }
        env.update(self.env)
        env.update(extra)
        env["INGEST_METRICS_PORT"] = str(self.port)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "labelstudio_ingest.consumer.cli", "consume"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str) -> httpx.Response | None:
        try:
            return httpx.get(self.url(path), timeout=2)
        except httpx.HTTPError:
            return None

    def is_ready(self) -> bool:
        response = self.get("/readyz")
        return response is not None and response.status_code == 200

    def wait_ready(self, timeout: float = 60.0) -> ConsumerProcess:
        eventually(lambda: self.is_ready() or self._exited(), timeout=timeout, message="consumer not ready")
        assert self.running(), self.log_text()
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample on /metrics (0 when absent)."""
        response = self.get("/metrics")
        assert response is not None, "metrics endpoint not answering"
        total = 0.0
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, then wait for the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def wait_exit(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_entries(self) -> list[dict[str, Any]]:
        entries = []
        for line in self.log_text().splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
        return entries


@dataclass
class Rig:
    """What a consumer test against real servers needs: broker, Label Studio, a fresh topic."""

    tmp_path: Path
    bootstrap: str
    label_studio: Any
    ls_client: Any
    publisher: Publisher
    topic: str

    def consumer(self, name: str = "consumer", *, topic: str | None = None, **extra: str) -> ConsumerProcess:
        """A configured (not yet started) consumer of this rig's topic."""
        return ConsumerProcess.configured(
            self.tmp_path,
            bootstrap=self.bootstrap,
            label_studio=self.label_studio,
            topic=topic or self.topic,
            name=name,
            **extra,
        )

"""Where the producer's options come from when the caller leaves them out: the environment, then defaults.

The producer extra has no pydantic-settings on purpose (it ships inside someone else's app), so this
reads ``os.environ`` directly.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from labelstudio_ingest.schemas import DEFAULT_TOPIC

ENV_PROJECT_ID = "LABEL_STUDIO_PROJECT_ID"
ENV_BOOTSTRAP_SERVERS = "KAFKA_BOOTSTRAP_SERVERS"
ENV_TOPIC = "INGEST_TOPIC"
ENV_SERVICE_NAMES = ("OTEL_SERVICE_NAME", "INGEST_SERVICE_NAME")

DEFAULT_BOOTSTRAP_SERVERS = "localhost:9092"

PRODUCER_DEFAULTS: Mapping[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    # Few, large batches: the Kafka client's I/O thread shares the GIL with the app, and each batch
    # it completes (one callback per record) is a burst the app's thread may wait behind. A labelling
    # task is in no hurry; flush() and close() send at once regardless.
    "linger_ms": 500,
    "batch_size": 256 * 1024,
    # Only the background sender ever blocks, and it re-queues what it could not hand over.
    "max_block_ms": 5_000,
    "bootstrap_timeout_ms": 10_000,
    "request_timeout_ms": 10_000,
    # Records the client could not deliver in time come back to the handler's buffer and are retried.
    "delivery_timeout_ms": 30_000,
    "reconnect_backoff_max_ms": 5_000,
}
"""kafka-python settings the handler uses unless ``producer_config`` overrides them."""

_FORBIDDEN_SETTINGS = {
    "key_serializer": "the handler sends encoded bytes",
    "value_serializer": "the handler sends encoded bytes",
    "transactional_id": "events are published one by one, not in transactions",
}
_TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")


def resolve_bootstrap_servers(value: str | Sequence[str] | None) -> list[str]:
    """The broker list: the argument, else ``KAFKA_BOOTSTRAP_SERVERS``, else ``localhost:9092``."""
    if value is None:
        value = os.environ.get(ENV_BOOTSTRAP_SERVERS) or DEFAULT_BOOTSTRAP_SERVERS
    if isinstance(value, str):
        servers = [part.strip() for part in value.split(",") if part.strip()]
    else:
        servers = [str(part).strip() for part in value if str(part).strip()]
    if not servers:
        raise ValueError("bootstrap_servers is empty; give host:port of at least one Kafka broker")
    return servers


def resolve_topic(value: str | None) -> str:
    """The topic: the argument, else ``INGEST_TOPIC``, else the consumer's default topic."""
    topic = value if value is not None else os.environ.get(ENV_TOPIC) or DEFAULT_TOPIC
    if not _TOPIC_NAME.match(topic) or topic in {".", ".."}:
        raise ValueError(f"invalid Kafka topic name {topic!r}: use 1-249 characters of [a-zA-Z0-9._-]")
    return topic


def resolve_project_id(value: int | str | None) -> int | None:
    """The project id: the argument, else ``LABEL_STUDIO_PROJECT_ID``, else none (the name is used)."""
    if value is None or value == "":
        value = os.environ.get(ENV_PROJECT_ID) or None
    if value is None:
        return None
    try:
        project_id = int(value)
    except ValueError:
        raise ValueError(f"project_id must be a positive integer, not {value!r}") from None
    if project_id <= 0:
        raise ValueError(f"project_id must be a positive integer, not {project_id}")
    return project_id


def producer_settings(bootstrap_servers: list[str], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The full kafka-python configuration: defaults, then the caller's settings (TLS, SASL, ...).

    Raises:
        ValueError: for a setting kafka-python does not know, or one the handler must own.
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(KafkaProducer.DEFAULT_CONFIG))
    if unknown:
        raise ValueError(f"unknown kafka-python producer settings: {', '.join(unknown)}")
    for key, why in _FORBIDDEN_SETTINGS.items():
        if overrides.get(key) is not None:
            raise ValueError(f"producer_config may not set {key}: {why}")
    if "bootstrap_servers" in overrides:
        raise ValueError("give bootstrap_servers as the handler's own argument, not in producer_config")
    return {**PRODUCER_DEFAULTS, **overrides, "bootstrap_servers": bootstrap_servers}


def service_name() -> str | None:
    """This process's service name: ``OTEL_SERVICE_NAME``, ``INGEST_SERVICE_NAME``, or the program name."""
    for name in ENV_SERVICE_NAMES:
        if value := os.environ.get(name):
            return value
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return program or None


def host_name() -> str | None:
    """This machine's host name, or none when it cannot be read."""
    try:
        return socket.gethostname() or None
    except OSError:
        return None

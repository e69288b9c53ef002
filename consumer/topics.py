"""Start-up checks of the topics: wait for the input topic, create the ledger and dead-letter topics.

The ledger must have exactly as many partitions as the input topic (ledger partition *p* holds
the run_ids of input partition *p*); a mismatch stops start-up with a clear message. An existing
ledger topic must also keep its records for the dedup horizon: a shorter ``retention.ms`` or
``retention.bytes`` (e.g. a broker default of 7 days) deletes markers the consumer still counts on,
so start-up refuses it (or warns, ``INGEST_LEDGER_RETENTION_CHECK=warn``).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Literal

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from labelstudio_ingest.consumer.ledger import bytes_per_run
from labelstudio_ingest.schemas import Limits

log = logging.getLogger(__name__)

_UNKNOWN_TOPIC = 3
RETENTION_KEYS = ("retention.ms", "retention.bytes")
MAX_SEGMENT_BYTES = 1 << 30
"""Kafka's largest ``segment.bytes`` (an int; brokers refuse more)."""

RetentionCheck = Literal["refuse", "warn"]


class TopicError(RuntimeError):
    """The topics cannot be used as configured (for example a ledger of the wrong size)."""


def partition_count(admin: Any, topic: str) -> int | None:
    """Partitions of ``topic``, or None when it does not exist."""
    (description,) = admin.describe_topics([topic])
    if description.get("error_code") == _UNKNOWN_TOPIC:
        return None
    if description.get("error_code"):
        raise TopicError(f"cannot describe topic {topic!r}: error code {description['error_code']}")
    return len(description.get("partitions") or []) or None


def ledger_topic_configs(
    horizon_ms: int, max_run_ids: int, max_tasks_per_run: int = Limits().max_inputs
) -> dict[str, str]:
    """Configs that bound a ledger partition by the dedup horizon and by the run_ids remembered.

    Records have unique keys, so the policy is ``delete``: ``retention.ms`` is the horizon and
    ``retention.bytes`` what ``max_run_ids`` runs of ``max_tasks_per_run`` tasks can take at worst
    (:func:`~labelstudio_ingest.consumer.ledger.bytes_per_run`, a few KB a run): a bound, not an
    allocation. Segments roll at an eighth of either bound so that old data actually goes.
    """
    retention_bytes = max_run_ids * bytes_per_run(max_tasks_per_run)
    return {
        "cleanup.policy": "delete",
        "retention.ms": str(horizon_ms),
        "retention.bytes": str(retention_bytes),
        "segment.ms": str(max(60_000, horizon_ms // 8)),
        "segment.bytes": str(min(MAX_SEGMENT_BYTES, max(1 << 20, retention_bytes // 8))),
    }


def retention_shortfalls(reported: dict[str, str], wanted: dict[str, str]) -> list[str]:
    """What in a ledger topic's reported configs keeps records shorter than ``wanted`` (pure).

    A key the broker does not report is not a shortfall (it cannot be judged); -1 means unbounded.
    """
    problems = []
    for key in RETENTION_KEYS:
        value, need = reported.get(key), int(wanted[key])
        if value is None:
            continue
        try:
            have = int(value)
        except ValueError:
            problems.append(f"{key}={value!r} is not a number")
            continue
        if 0 <= have < need:
            problems.append(f"{key}={have} is below the {need} the dedup settings need")
    return problems


def topic_configs(admin: Any, name: str) -> dict[str, str]:
    """The configs a broker reports for a topic (every one it knows, defaults included).

    tansu 0.6 reports only the configs the topic was created with; Kafka reports all of them.
    """
    resource = ConfigResource(ConfigResourceType.TOPIC, name)
    described = admin.describe_configs([resource], config_filter="all")
    entries = (described.get("topic") or {}).get(name) or {}
    return {key: str(entry["value"]) for key, entry in entries.items() if entry.get("value") is not None}


def check_ledger_retention(admin: Any, name: str, wanted: dict[str, str], mode: RetentionCheck) -> None:
    """Refuse (``mode="refuse"``) or warn about a ledger topic that deletes records too early.

    Raises:
        TopicError: the topic's retention is shorter than ``wanted`` and ``mode`` is ``refuse``.
    """
    try:
        reported = topic_configs(admin, name)
    except KafkaError as exc:
        log.warning("cannot read the ledger topic's configs", extra={"topic": name, "error": str(exc)})
        return
    unknown = [key for key in RETENTION_KEYS if key not in reported]
    if unknown:
        log.warning(
            "the broker does not report the ledger topic's retention; check it by hand",
            extra={"topic": name, "unreported": unknown, "wanted": {k: wanted[k] for k in unknown}},
        )
    problems = retention_shortfalls(reported, wanted)
    if not problems:
        return
    message = (
        f"the ledger topic {name!r} deletes records too early: {'; '.join(problems)}. Markers deleted "
        "early make a restart import runs again. Raise them (kafka-configs --alter --entity-type topics "
        f"--entity-name {name} --add-config retention.ms=...,retention.bytes=...), or lower "
        "INGEST_DEDUP_HORIZON_DAYS / INGEST_DEDUP_MAX_RUN_IDS (docs/EXACTLY_ONCE.md)"
    )
    if mode == "refuse":
        raise TopicError(message + "; INGEST_LEDGER_RETENTION_CHECK=warn starts anyway")
    log.warning(message, extra={"topic": name})


def ensure_topics(
    admin: KafkaAdminClient,
    *,
    topic: str,
    ledger_topic: str,
    dlq_topic: str,
    create: bool,
    ledger_configs: dict[str, str],
    stop: threading.Event,
    wait_s: float = 5.0,
    retention_check: RetentionCheck = "refuse",
) -> int:
    """Wait until the input topic exists, then make sure the ledger and DLQ topics fit it.

    Returns the input topic's partition count (0 when ``stop`` was set while waiting).
    """
    while True:
        try:
            partitions = partition_count(admin, topic)
        except KafkaError as exc:
            log.warning("cannot describe the input topic yet", extra={"topic": topic, "error": str(exc)})
            partitions = None
        if partitions:
            break
        log.warning("waiting for the input topic to exist", extra={"topic": topic})
        if stop.wait(wait_s):
            return 0
    _ensure(admin, ledger_topic, partitions, ledger_configs, create=create, exact=True)
    check_ledger_retention(admin, ledger_topic, ledger_configs, retention_check)
    _ensure(admin, dlq_topic, partitions, {}, create=create, exact=False)
    return partitions


def _ensure(
    admin: Any, name: str, partitions: int, configs: dict[str, str], *, create: bool, exact: bool
) -> None:
    existing = partition_count(admin, name)
    if existing is None:
        if not create:
            raise TopicError(f"topic {name!r} does not exist and INGEST_CREATE_TOPICS is false")
        try:
            admin.create_topics([NewTopic(name, partitions, -1, topic_configs=configs)])
            log.info("created topic", extra={"topic": name, "partitions": partitions, "configs": configs})
        except TopicAlreadyExistsError:
            pass  # another replica was first
        existing = partition_count(admin, name)
    if exact and existing != partitions:
        raise TopicError(
            f"the ledger topic {name!r} has {existing} partitions but the input topic has {partitions}; "
            "they must match (add ledger partitions together with input partitions, see docs/EXACTLY_ONCE.md)"
        )


__all__ = [
    "RetentionCheck",
    "TopicError",
    "check_ledger_retention",
    "ensure_topics",
    "ledger_topic_configs",
    "partition_count",
    "retention_shortfalls",
    "topic_configs",
]

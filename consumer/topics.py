"""Start-up checks of the topics: wait for the input topic, create the ledger and dead-letter topics.

The ledger must have exactly as many partitions as the input topic (ledger partition *p* holds
the run_ids of input partition *p*); a mismatch stops start-up with a clear message.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

log = logging.getLogger(__name__)

_UNKNOWN_TOPIC = 3


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


def ledger_topic_configs(horizon_ms: int, max_run_ids: int) -> dict[str, str]:
    """Configs that bound a ledger partition by the dedup horizon and by the run_ids remembered.

    Records have unique keys, so the policy is ``delete``: ``retention.ms`` is the horizon and
    ``retention.bytes`` about twice what ``max_run_ids`` runs take (pending + imported, ~100 B a
    run); segments roll at an eighth of either bound so that old data actually goes.
    """
    retention_bytes = max_run_ids * 200
    return {
        "cleanup.policy": "delete",
        "retention.ms": str(horizon_ms),
        "retention.bytes": str(retention_bytes),
        "segment.ms": str(max(60_000, horizon_ms // 8)),
        "segment.bytes": str(max(1 << 20, retention_bytes // 8)),
    }


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


__all__ = ["TopicError", "ensure_topics", "ledger_topic_configs", "partition_count"]

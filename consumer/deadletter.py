"""Dead letters: the original record (key, value, headers, timestamp) plus headers saying why.

Header names follow Kafka Connect's ``__connect.errors.*`` idea under an ``ingest.error.`` prefix;
earlier ``ingest.error.*`` headers (a record that was dead-lettered before and replayed) are
replaced, not repeated. When Kafka refuses the record for its size, the dead letter is sent
without its value and says so in ``ingest.error.value.omitted`` (the original size in bytes).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from labelstudio_ingest.consumer.outbox import OutRecord

PREFIX = "ingest.error."
H_REASON = PREFIX + "reason"
H_STAGE = PREFIX + "stage"
H_CLASS = PREFIX + "exception.class"
H_MESSAGE = PREFIX + "exception.message"
H_TOPIC = PREFIX + "source.topic"
H_PARTITION = PREFIX + "source.partition"
H_OFFSET = PREFIX + "source.offset"
H_TIME = PREFIX + "time"
H_GROUP = PREFIX + "group.id"
H_VALUE_OMITTED = PREFIX + "value.omitted"

MAX_MESSAGE_CHARS = 4_000


class Stage(StrEnum):
    """Where in the data path a record was refused."""

    DECODE = "decode"
    VALIDATE = "validate"
    ROUTE = "route"
    IMPORT = "import"


class Reason(StrEnum):
    """Reasons of the consumer's own (the decode reasons come from ``schemas.DecodeErrorReason``)."""

    UNKNOWN_PROJECT = "unknown_project"
    LABEL_CONFIG = "label_config"
    UNSAFE_LABEL_CONFIG = "unsafe_label_config"
    NOT_ALLOWED = "not_allowed"
    PROJECT_LIMIT = "project_limit"
    IMPORT_REJECTED = "import_rejected"
    SERVER_ERROR = "server_error"
    """Label Studio failed this run's import alone (5xx or timeout), again and again, while it
    answered other requests: something in the record breaks it."""


@dataclass(frozen=True, slots=True)
class Failure:
    """Why one record is dead-lettered."""

    reason: str
    stage: Stage
    exception_class: str
    message: str

    @classmethod
    def of(cls, reason: str, stage: Stage, exc: BaseException, message: str | None = None) -> Failure:
        """A failure described by an exception (``message`` overrides its text)."""
        kind = type(exc)
        return cls(reason, stage, f"{kind.__module__}.{kind.__qualname__}", message or str(exc))


def dead_letter(record: Any, failure: Failure, *, topic: str, group_id: str) -> tuple[OutRecord, OutRecord]:
    """The dead letter of a consumed record, and its value-less fallback for Kafka's size limit."""
    original = [(k, v) for k, v in (record.headers or []) if not k.startswith(PREFIX)]
    message = failure.message
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 3] + "..."
    ours = [
        (H_REASON, failure.reason.encode()),
        (H_STAGE, failure.stage.value.encode()),
        (H_CLASS, failure.exception_class.encode()),
        (H_MESSAGE, message.encode("utf-8", "replace")),
        (H_TOPIC, str(record.topic).encode()),
        (H_PARTITION, str(record.partition).encode()),
        (H_OFFSET, str(record.offset).encode()),
        (H_TIME, datetime.now(UTC).isoformat(timespec="milliseconds").encode()),
        (H_GROUP, group_id.encode()),
    ]
    timestamp = record.timestamp if isinstance(record.timestamp, int) and record.timestamp >= 0 else None
    full = OutRecord(topic, record.key, record.value, headers=original + ours, timestamp_ms=timestamp)
    size = len(record.value) if record.value is not None else 0
    slim = OutRecord(
        topic,
        record.key,
        None,
        headers=[*original, *ours, (H_VALUE_OMITTED, str(size).encode())],
        timestamp_ms=timestamp,
    )
    return full, slim


def header(headers: list[tuple[str, bytes]] | None, name: str) -> str | None:
    """The last value of header ``name`` as text (for readers of dead letters and tests)."""
    for key, value in reversed(headers or []):
        if key == name:
            return value.decode("utf-8", "replace")
    return None


__all__ = [
    "H_CLASS",
    "H_GROUP",
    "H_MESSAGE",
    "H_OFFSET",
    "H_PARTITION",
    "H_REASON",
    "H_STAGE",
    "H_TIME",
    "H_TOPIC",
    "H_VALUE_OMITTED",
    "PREFIX",
    "Failure",
    "Reason",
    "Stage",
    "dead_letter",
    "header",
]

"""Dead letters for people: filters, one readable line or JSON object each, and the record to replay.

Kafka I/O lives in :mod:`labelstudio_ingest.consumer.dlq_kafka`, the commands in
:mod:`labelstudio_ingest.consumer.dlq_cli`; docs/DEAD_LETTERS.md is the user's guide.
"""

from __future__ import annotations

import base64
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from labelstudio_ingest.consumer import deadletter as dl

REPLAY_OF = "ingest.replay.of"
"""Header on a replayed record: ``<dlq topic>/<partition>/<offset>`` of the dead letter it came from."""

LINE_MESSAGE_CHARS = 160
UNKNOWN = "unknown"

_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """An ISO-8601 time (UTC when it names no zone) or a duration ago such as ``30m``, ``2h``, ``7d``."""
    text = text.strip()
    relative = _RELATIVE.match(text)
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an ISO-8601 time (2026-01-31T12:00:00Z) nor a duration ago (30m, 2h, 7d)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _text(data: bytes | None) -> str | None:
    """UTF-8 text, or None when ``data`` is absent or not UTF-8."""
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of the dead-letter topic and what its ``ingest.error.*`` headers say."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    timestamp_ms: int | None = None

    @classmethod
    def from_record(cls, record: Any) -> DeadLetter:
        """A dead letter from a kafka-python ``ConsumerRecord``."""
        timestamp = record.timestamp if isinstance(record.timestamp, int) and record.timestamp >= 0 else None
        return cls(
            record.topic,
            record.partition,
            record.offset,
            record.key,
            record.value,
            list(record.headers or []),
            timestamp,
        )

    def header(self, name: str) -> str | None:
        """The last value of header ``name`` as text."""
        return dl.header(self.headers, name)

    @property
    def reason(self) -> str:
        return self.header(dl.H_REASON) or UNKNOWN

    @property
    def ref(self) -> str:
        """Where this dead letter is: ``<topic>/<partition>/<offset>``."""
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def source(self) -> str:
        """Where the original record was read: ``<topic>/<partition>/<offset>``."""
        parts = (self.header(h) or "?" for h in (dl.H_TOPIC, dl.H_PARTITION, dl.H_OFFSET))
        return "/".join(parts)

    @property
    def time(self) -> datetime | None:
        """When it was dead-lettered (``ingest.error.time``; else the record's timestamp)."""
        stamp = self.header(dl.H_TIME)
        if stamp:
            try:
                moment = datetime.fromisoformat(stamp)
                return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
            except ValueError:
                pass
        if self.timestamp_ms is not None:
            return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)
        return None

    @property
    def value_omitted(self) -> bool:
        """True when the dead letter was sent without its value (Kafka refused it for its size)."""
        return self.header(dl.H_VALUE_OMITTED) is not None


@dataclass(frozen=True, slots=True)
class Filter:
    """Which dead letters a command acts on: reasons (any of), and a dead-lettering time window."""

    reasons: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, letter: DeadLetter) -> bool:
        if self.reasons and letter.reason not in self.reasons:
            return False
        if self.since is None and self.until is None:
            return True
        moment = letter.time
        if moment is None:
            return False
        return (self.since is None or moment >= self.since) and (self.until is None or moment < self.until)


def _show_bytes(data: bytes | None) -> str:
    if data is None:
        return "-"
    text = _text(data)
    return text if text is not None and text.isprintable() else "base64:" + base64.b64encode(data).decode()


def line(letter: DeadLetter) -> str:
    """One readable line: time, source, reason, stage, key, message (shortened, on one line)."""
    moment = letter.time
    when = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z") if moment else "?"
    message = " ".join((letter.header(dl.H_MESSAGE) or "").split())
    if len(message) > LINE_MESSAGE_CHARS:
        message = message[: LINE_MESSAGE_CHARS - 3] + "..."
    extra = f" value-omitted({letter.header(dl.H_VALUE_OMITTED)} bytes)" if letter.value_omitted else ""
    return (
        f"{when} {letter.source} {letter.reason} stage={letter.header(dl.H_STAGE) or '?'} "
        f"key={_show_bytes(letter.key)}{extra} :: {message}"
    )


def as_json(letter: DeadLetter) -> dict[str, Any]:
    """Everything about a dead letter as JSON-ready data (bytes as UTF-8 text, else base64)."""

    def encoded(data: bytes | None) -> tuple[str | None, str]:
        text = _text(data)
        if data is None or text is not None:
            return text, "utf-8"
        return base64.b64encode(data).decode(), "base64"

    key, key_encoding = encoded(letter.key)
    value, value_encoding = encoded(letter.value)
    moment = letter.time
    return {
        "dlq": letter.ref,
        "time": moment.isoformat() if moment else None,
        "reason": letter.reason,
        "stage": letter.header(dl.H_STAGE),
        "source": letter.source,
        "key": key,
        "key_encoding": key_encoding,
        "value": value,
        "value_encoding": value_encoding,
        "timestamp_ms": letter.timestamp_ms,
        "headers": [
            [name, _text(raw) or "base64:" + base64.b64encode(raw).decode()] for name, raw in letter.headers
        ],
    }


def replay_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    """The original headers (without ``ingest.error.*`` or an earlier ``ingest.replay.of``), then ours."""
    kept = [(k, v) for k, v in letter.headers if not k.startswith(dl.PREFIX) and k != REPLAY_OF]
    return [*kept, (REPLAY_OF, letter.ref.encode())]


def summary(counts: Counter[str], verb: str) -> str:
    """``3 dead letters <verb>: not_json=1, unknown_project=2`` (reasons sorted)."""
    total = sum(counts.values())
    noun = "dead letter" if total == 1 else "dead letters"
    detail = ", ".join(f"{reason}={n}" for reason, n in sorted(counts.items()))
    return f"{total} {noun} {verb}" + (f": {detail}" if detail else "")


def count_reasons(letters: Iterable[DeadLetter]) -> Counter[str]:
    """How many dead letters per reason."""
    return Counter(letter.reason for letter in letters)


__all__ = [
    "REPLAY_OF",
    "DeadLetter",
    "Filter",
    "as_json",
    "count_reasons",
    "line",
    "parse_time",
    "replay_headers",
    "summary",
]

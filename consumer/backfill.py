"""Backfill selection: which past runs of the input topic go into a backfill's target project.

Pure logic, no I/O: the time window, the filters on what an event says, deterministic sampling by
trace, the names of a backfill's own consumer group, ledger and dead-letter topics, and the tally
behind the progress lines and the summary. ``labelstudio-ingest backfill`` (``backfill_cli.py``)
reads the topic and runs the consumer's pipeline; docs/BACKFILL.md is the user's guide.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any
from uuid import UUID

from labelstudio_ingest.schemas import Event
from labelstudio_ingest.schemas.sampling import trace_fraction

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
NAME_MAX_CHARS = 80
"""Longest backfill name: it goes into topic and group names (Kafka allows 249 characters)."""


def sampled(key: UUID, rate: float) -> bool:
    """Whether a run with this trace (or run) key is in a sample of ``rate`` (0 to 1)."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    return trace_fraction(key) < rate


def trace_key(event: Event) -> UUID:
    """The id a run is sampled by: its trace's root run id where the event carries one, else its own."""
    trace = getattr(event, "trace", None)
    root = getattr(trace, "root_run_id", None)
    return root if isinstance(root, UUID) else event.run_id


def parse_rate(text: str) -> float:
    """A sample share: ``0.1`` or ``10%``. Raises ValueError outside (0, 1]."""
    raw = text.strip()
    try:
        rate = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise ValueError(f"--sample must be a share such as 0.1 or 10%, not {text!r}") from None
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"--sample must be above 0 and at most 1 (100%), not {text!r}")
    return rate


def parse_pair(text: str) -> tuple[str, str]:
    """``key=value`` of ``--metadata``. Raises ValueError without ``=`` or with an empty key."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--metadata takes KEY=VALUE, not {text!r}")
    return key.strip(), value


def _metadata_equals(value: Any, wanted: str) -> bool:
    """A metadata value equals the text given on the command line: as a string, or as JSON (3, true)."""
    if isinstance(value, str):
        return value == wanted
    return json.dumps(value, separators=(",", ":")) == wanted


@dataclass(frozen=True, slots=True)
class Selection:
    """Which records and runs a backfill takes. An empty filter takes everything.

    Several values of one filter are alternatives (``--service a --service b``: either), except tags
    and metadata pairs, which must all be present. Different filters must all match.
    """

    since_ms: int | None = None
    """Records published at or after this time (epoch ms, the record's Kafka timestamp)."""
    until_ms: int | None = None
    """Records published before this time."""
    services: frozenset[str] = frozenset()
    models: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    metadata: tuple[tuple[str, str], ...] = ()
    kinds: frozenset[str] = frozenset()
    errors_only: bool = False
    from_projects: tuple[str, ...] = ()
    """Original targets: a project id (digits) or a title pattern (``fnmatch``, e.g. ``LangChain-*``)."""
    sample: float = 1.0

    def in_window(self, timestamp_ms: int | None) -> bool:
        """Whether a record's Kafka timestamp is in ``[since, until)`` (none: only when unbounded)."""
        if timestamp_ms is None or timestamp_ms < 0:
            return self.since_ms is None and self.until_ms is None
        if self.since_ms is not None and timestamp_ms < self.since_ms:
            return False
        return self.until_ms is None or timestamp_ms < self.until_ms

    def matches(self, event: Event) -> bool:
        """Whether the run passes every filter on what the event says, and the sample."""
        if self.kinds and event.kind not in self.kinds:
            return False
        if self.services and event.source.service not in self.services:
            return False
        if self.models and event.model_name not in self.models:
            return False
        if self.errors_only and event.error is None:
            return False
        if self.tags and not self.tags.issubset(event.tags):
            return False
        for key, wanted in self.metadata:
            if key not in event.metadata or not _metadata_equals(event.metadata[key], wanted):
                return False
        if self.from_projects and not self._from_project(event):
            return False
        return sampled(trace_key(event), self.sample)

    def _from_project(self, event: Event) -> bool:
        target = event.target
        for wanted in self.from_projects:
            if wanted.isdigit():
                if target.project_id == int(wanted):
                    return True
            elif target.project_name is not None and fnmatchcase(target.project_name.strip(), wanted):
                return True
        return False

    def spec(self) -> str:
        """A canonical text of the filters (not the time window), for the default backfill name."""
        body = {
            "services": sorted(self.services),
            "models": sorted(self.models),
            "tags": sorted(self.tags),
            "metadata": sorted(self.metadata),
            "kinds": sorted(self.kinds),
            "errors_only": self.errors_only,
            "from_projects": sorted(self.from_projects),
            "sample": self.sample,
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":"))


def default_name(project_id: int, selection: Selection, window: tuple[str | None, str | None]) -> str:
    """The name of a backfill when none is given: the target and a hash of the command's selection.

    ``window`` is ``--since`` and ``--until`` as written (``7d`` stays ``7d``), so running the same
    command again is the same backfill and resumes where the last run stopped.
    """
    text = json.dumps([selection.spec(), list(window)])
    return f"p{project_id}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def check_name(name: str) -> str:
    """A user's ``--name`` made safe for topic and group names. Raises ValueError when nothing is left."""
    safe = _NAME_UNSAFE.sub("-", name.strip()).strip("-.")[:NAME_MAX_CHARS]
    if not safe:
        raise ValueError(f"--name {name!r} has no letters or digits")
    return safe


@dataclass(frozen=True, slots=True)
class Names:
    """Where a backfill keeps its state: all of it its own, none of live ingestion's."""

    backfill: str
    group_id: str
    """Its consumer group: committed offsets say where a re-run resumes."""
    ledger_topic: str
    """Its dedup ledger, one per target project: a run is imported once into that project."""
    dlq_topic: str
    """Its dead letters (runs Label Studio refused for the target)."""


def names_for(*, name: str, project_id: int, topic: str, group_id: str) -> Names:
    """The group and topics of backfill ``name`` into ``project_id`` reading ``topic``."""
    return Names(
        backfill=name,
        group_id=f"{group_id}.backfill.{name}",
        ledger_topic=f"{topic}.backfill-p{project_id}.ledger",
        dlq_topic=f"{topic}.backfill-p{project_id}.dlq",
    )


# --- offsets ----------------------------------------------------------------------------------------
def start_offset(begin: int, end: int, by_time: tuple[int, int] | None, since_ms: int | None) -> int:
    """Where reading a partition starts for ``since_ms``, from the broker's time-index answer.

    ``by_time`` is ``(offset, timestamp)`` of ``offsets_for_times``, or None when the broker found no
    record at or after the time. An answer is only a starting point (records are filtered by their
    own timestamps as well), so one that cannot be right (a negative timestamp, one before
    ``since``, an offset outside the log: tansu 0.6 answers offset 0 for every time) is replaced
    by the start of the log, which is always correct, only slower.
    """
    if since_ms is None:
        return begin
    if by_time is None:
        return end
    offset, timestamp = by_time
    if timestamp < since_ms or not begin <= offset <= end:
        return begin
    return offset


# --- counting ---------------------------------------------------------------------------------------
@dataclass(slots=True)
class Tally:
    """What a backfill has done so far: the progress lines and the summary."""

    total: int = 0
    """Records in the range to read (this run)."""
    read: int = 0
    invalid: int = 0
    """Records that are not valid events (the live consumer dead-lettered them; skipped here)."""
    matched: int = 0
    imported: int = 0
    present: int = 0
    """Matched runs already in the target (an earlier run of a backfill, or a second copy)."""
    dead_lettered: int = 0
    by_kind_service: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add_match(self, event: Event) -> None:
        """Count one matched run under its kind and service."""
        self.matched += 1
        self.by_kind_service[(event.kind, event.source.service or "-")] += 1

    def progress(self, elapsed_s: float) -> dict[str, Any]:
        """One JSON progress line: counts, rate (records/s) and the estimated seconds left."""
        rate = self.read / elapsed_s if elapsed_s > 0 else 0.0
        left = max(0, self.total - self.read)
        eta = round(left / rate, 1) if rate > 0 else None
        return {
            "progress": "backfill",
            "read": self.read,
            "total": self.total,
            "matched": self.matched,
            "imported": self.imported,
            "already_present": self.present,
            "dead_lettered": self.dead_lettered,
            "rate_per_s": round(rate, 1),
            "eta_s": eta,
        }

    def summary(self) -> dict[str, Any]:
        """The counts at the end."""
        return {
            "read": self.read,
            "invalid": self.invalid,
            "matched": self.matched,
            "imported": self.imported,
            "already_present": self.present,
            "dead_lettered": self.dead_lettered,
        }


def breakdown(counts: Mapping[tuple[str, str], int]) -> list[dict[str, Any]]:
    """Counts per (kind, service), largest first: the dry run's table."""
    rows = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [{"kind": kind, "service": service, "runs": runs} for (kind, service), runs in rows]


def iso(ms: int | None) -> str | None:
    """An epoch-ms time as ISO 8601 UTC."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def oldest(timestamps: Iterable[int | None]) -> int | None:
    """The oldest known timestamp (ignoring unknown ones)."""
    known = [t for t in timestamps if t is not None and t >= 0]
    return min(known) if known else None


__all__ = [
    "NAME_MAX_CHARS",
    "Names",
    "Selection",
    "Tally",
    "breakdown",
    "check_name",
    "default_name",
    "iso",
    "names_for",
    "oldest",
    "parse_pair",
    "parse_rate",
    "sampled",
    "start_offset",
    "trace_key",
]

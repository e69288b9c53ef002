"""The steps of one batch: decode → drop duplicates → route → build tasks → import → record.

A :class:`Batch` remembers what happened to each record, so :meth:`Pipeline.process` can be
called again with the same batch after Label Studio was unavailable: it redoes only what is
left. Nothing here commits offsets; the caller does that after :meth:`Pipeline.finish`.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from labelstudio_ingest.consumer.allowlist import ProjectLimitError, TargetNotAllowedError
from labelstudio_ingest.consumer.configsafety import UnsafeLabelConfigError
from labelstudio_ingest.consumer.deadletter import Failure, Reason, Stage, dead_letter
from labelstudio_ingest.consumer.errors import (
    LabelStudioUnavailable,
    ProjectGone,
    Rebalanced,
    UncertainTooRecent,
    describe,
    error_kind,
    unavailable,
)
from labelstudio_ingest.consumer.labelconfig import LabelConfigError
from labelstudio_ingest.consumer.ledger import PENDING_MARGIN_MS, Ledger
from labelstudio_ingest.consumer.metrics import Metrics
from labelstudio_ingest.consumer.outbox import Outbox, OutRecord
from labelstudio_ingest.consumer.projects import Project, ProjectResolver, UnknownProjectError
from labelstudio_ingest.consumer.sink import ImportReport, LabelStudioSink, Unit
from labelstudio_ingest.consumer.tasks import META_MAX_BYTES, build_tasks
from labelstudio_ingest.schemas import DecodeErrorReason, Event, EventDecodeError, Limits, decode, run_key

log = logging.getLogger(__name__)

DECODE_STAGE_REASONS = frozenset(
    {DecodeErrorReason.EMPTY, DecodeErrorReason.NOT_UTF8, DecodeErrorReason.NOT_JSON}
)
"""Decode reasons reported with stage ``decode``; the others are ``validate``."""
TASK_BUILD_REASON = "task_build"
H_ORIGINAL_KEY = "ingest.original.key"
"""On a record re-published under its canonical key: the key it was consumed with (empty: none)."""
SERVER_ERROR_SUMMARY = "Label Studio failed the import of this run alone while it answered other requests"

CrashHook = Callable[[str, int], None]


class ItemState(StrEnum):
    """Where one record stands."""

    NEW = "new"
    DEAD = "dead"
    DUPLICATE = "duplicate"
    IMPORTED = "imported"
    REKEYED = "rekeyed"
    """Valid, but keyed otherwise than by its canonical run_id: re-published under that key."""


@dataclass(eq=False, slots=True)
class Item:
    """One consumed record and what has become of it."""

    record: Any
    event: Event | None = None
    state: ItemState = ItemState.NEW
    project: Project | None = None
    tasks: list[dict[str, Any]] | None = None
    rerouted: bool = False

    @property
    def partition(self) -> int:
        """The input partition."""
        return int(self.record.partition)

    @property
    def run_id(self) -> uuid.UUID:
        """The run id (decoded items only)."""
        assert self.event is not None
        return self.event.run_id


@dataclass(slots=True)
class Batch:
    """Records polled together, processed and committed together."""

    number: int
    items: list[Item] = field(default_factory=list)
    suspect_failures: int = 0
    """Imports of this batch that failed in a row with a 5xx or a timeout (see ``errors.suspect``)."""
    isolate: bool = False
    """Split failing imports down to the run that breaks Label Studio, and dead-letter it."""

    def next_offsets(self) -> dict[tuple[str, int], int]:
        """The offsets to commit: one past the last record of each partition."""
        offsets: dict[tuple[str, int], int] = {}
        for item in self.items:
            key = (str(item.record.topic), item.partition)
            offsets[key] = max(offsets.get(key, 0), int(item.record.offset) + 1)
        return offsets

    def count(self, state: ItemState) -> int:
        """How many items are in ``state``."""
        return sum(1 for item in self.items if item.state is state)


class Pipeline:
    """Runs the steps of a batch against the ledger, the resolver and Label Studio."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        sink: LabelStudioSink,
        resolver: ProjectResolver,
        outbox: Outbox,
        metrics: Metrics,
        limits: Limits,
        dlq_topic: str,
        group_id: str,
        crash: CrashHook | None = None,
        mask: Callable[[str], str] = str,
        settle_s: float = 0.0,
        clock: Callable[[], float] = time.time,
        trace_url_template: str | None = None,
        meta_max_bytes: int = META_MAX_BYTES,
    ) -> None:
        """``settle_s`` (the import timeout): how long after its ``pending`` marker an uncertain
        run's import may still be applied by Label Studio; it is not asked about before then.
        ``trace_url_template``: the link to a run's trace in its tasks (``tracelinks.py``)."""
        self._ledger = ledger
        self._sink = sink
        self._resolver = resolver
        self._outbox = outbox
        self._metrics = metrics
        self._limits = limits
        self._dlq_topic = dlq_topic
        self._group_id = group_id
        self._crash = crash or (lambda point, number: None)
        self._mask = mask
        self._settle_ms = int(settle_s * 1000)
        self._clock = clock
        self._trace_url_template = trace_url_template
        self._meta_max_bytes = meta_max_bytes
        self._isolate = False
        """Whether the batch in :meth:`process` isolates runs that fail with 5xx/timeouts."""

    # --- steps --------------------------------------------------------------------------------
    def start(self, records: Sequence[Any], number: int) -> Batch:
        """Decode every record; dead-letter the ones that are not valid events."""
        batch = Batch(number)
        self._metrics.events_consumed.inc(len(records))
        self._metrics.batch_size.observe(len(records))
        for record in records:
            item = Item(record)
            batch.items.append(item)
            try:
                item.event = decode(record.value, self._limits)
            except EventDecodeError as exc:
                stage = Stage.DECODE if exc.reason in DECODE_STAGE_REASONS else Stage.VALIDATE
                self._dead(item, Failure.of(exc.reason.value, stage, exc, exc.detail))
                continue
            self._metrics.events_valid.inc()
            if record.key != run_key(item.event.run_id):
                self._rekey(item)
        return batch

    def process(self, batch: Batch) -> None:
        """Drop duplicates, route, and import what is left of the batch.

        Raises:
            LabelStudioUnavailable: retry the same batch later (progress is kept in it).
            UncertainTooRecent: wait, then process the same batch again (nothing was sent).
        """
        self._isolate = batch.isolate
        while True:
            todo = [item for item in batch.items if item.state is ItemState.NEW]
            firsts, copies = self._drop_duplicates(todo)
            groups = self._route([item for item in firsts if item.state is ItemState.NEW])
            project_gone = False
            for project, items in groups:
                try:
                    self._import(project, items, batch.number)
                except ProjectGone:
                    self._project_gone(project, items)
                    project_gone = True
            if not self._settle_copies(copies) and not project_gone:
                return

    def escalate(self, batch: Batch, exc: LabelStudioUnavailable, *, after: int, stopping: bool) -> bool:
        """Whether to retry ``batch`` at once, isolating the run that breaks Label Studio: its
        import failed ``after`` times in a row with a 5xx or a timeout while Label Studio's /health
        answers. Down (refused, /health failing) is an outage: False, back off and retry,
        dead-letter nothing."""
        batch.suspect_failures = batch.suspect_failures + 1 if exc.suspect else 0
        if batch.isolate or batch.suspect_failures < after or stopping or not self._sink.reachable():
            return False
        batch.isolate = True
        log.warning(
            "the same import keeps failing while Label Studio answers; isolating the run that breaks it",
            extra={"batch": batch.number, "failures": batch.suspect_failures, "error": str(exc)},
        )
        return True

    def finish(self, batch: Batch) -> None:
        """Make the batch's ledger records and dead letters durable (before the offset commit)."""
        self._outbox.flush()
        if not log.isEnabledFor(logging.DEBUG):
            return
        log.debug(
            "batch done",
            extra={
                "batch": batch.number,
                "records": len(batch.items),
                "imported": batch.count(ItemState.IMPORTED),
                "duplicates": batch.count(ItemState.DUPLICATE),
                "dead_lettered": batch.count(ItemState.DEAD),
            },
        )

    # --- helpers ------------------------------------------------------------------------------
    def _drop_duplicates(self, items: list[Item]) -> tuple[list[Item], list[tuple[Item, Item]]]:
        """Drop runs the ledger has imported; of the rest, the first copy of each run goes on and
        later copies of it in the batch wait (returned second, with their first copy) for what
        becomes of the first."""
        first: dict[bytes, Item] = {}
        copies: list[tuple[Item, Item]] = []
        for item in items:
            run = item.run_id.bytes
            if self._ledger.memory(item.partition).is_imported(run):
                self._duplicate(item, "ledger")
            elif run in first:
                copies.append((item, first[run]))
            else:
                first[run] = item
        return list(first.values()), copies

    def _settle_copies(self, copies: list[tuple[Item, Item]]) -> bool:
        """Later copies of a run whose first copy is imported (or found in Label Studio) are
        duplicates. A copy whose first copy was dead-lettered (its target refused, say) stays new:
        whether it is a valid run is its own question, so it is processed next, never committed
        unimported. True when some copies are left to process."""
        left = False
        for item, first in copies:
            if first.state in {ItemState.IMPORTED, ItemState.DUPLICATE}:
                self._duplicate(item, "batch")
            else:
                left = True
        return left

    def _route(self, items: list[Item]) -> list[tuple[Project, list[Item]]]:
        groups: dict[int, tuple[Project, list[Item]]] = {}
        for item in items:
            if item.project is None or item.tasks is None:
                assert item.event is not None
                try:
                    item.project = self._resolver.resolve(item.event.target)
                except TargetNotAllowedError as exc:
                    self._dead(item, Failure.of(Reason.NOT_ALLOWED, Stage.ROUTE, exc))
                    continue
                except UnknownProjectError as exc:
                    self._dead(item, Failure.of(Reason.UNKNOWN_PROJECT, Stage.ROUTE, exc))
                    continue
                except ProjectLimitError as exc:  # replayable once the hourly cap has room
                    self._dead(item, Failure.of(Reason.PROJECT_LIMIT, Stage.ROUTE, exc))
                    continue
                except UnsafeLabelConfigError as exc:
                    self._dead(item, Failure.of(Reason.UNSAFE_LABEL_CONFIG, Stage.ROUTE, exc))
                    continue
                except LabelConfigError as exc:
                    self._dead(item, Failure.of(Reason.LABEL_CONFIG, Stage.ROUTE, exc))
                    continue
                except Rebalanced:
                    raise
                except Exception as exc:  # Label Studio's own trouble: retry, never blame the record
                    self._metrics.ls_errors.labels(error_kind(exc)).inc()
                    raise unavailable(exc) from exc
                try:
                    item.tasks = build_tasks(
                        item.event,
                        item.project.layout,
                        trace_url_template=self._trace_url_template,
                        meta_max_bytes=self._meta_max_bytes,
                    )
                except Exception as exc:  # a record our task builder cannot shape
                    self._dead(item, Failure.of(TASK_BUILD_REASON, Stage.ROUTE, exc))
                    continue
            groups.setdefault(item.project.id, (item.project, []))[1].append(item)
        return list(groups.values())

    def _import(self, project: Project, items: list[Item], number: int) -> None:
        uncertain = [item for item in items if self._marked_project(item) is not None]
        if uncertain:
            self._hold_recent(uncertain)  # before any marker of this batch: a retry sees the same state
            self._check_uncertain(project, uncertain)

        remaining = [item for item in items if item.state is ItemState.NEW]
        report: ImportReport[Item] = ImportReport()

        def imported(units: Sequence[tuple[Unit[Item], list[int]]]) -> None:
            by_partition: dict[int, list[tuple[uuid.UUID, list[int]]]] = {}
            for unit, task_ids in units:
                item = unit.key
                by_partition.setdefault(item.partition, []).append((item.run_id, task_ids))
                item.state = ItemState.IMPORTED
            for partition, runs in by_partition.items():
                self._ledger.mark_imported(partition, project.id, runs)
            self._metrics.runs_imported.inc(len(units))

        try:
            self._sink.import_units(
                project.id,
                [Unit(item, item.tasks or [], _request_bytes(item)) for item in remaining],
                report,
                imported,
                before_request=lambda units: self._announce(project.id, [u.key for u in units], number),
                isolate=self._isolate,
            )
        except LabelStudioUnavailable as exc:
            if not exc.maybe_applied:
                for item in remaining:
                    if item.state is ItemState.NEW:
                        self._ledger.not_applied(item.partition, item.run_id)
            raise
        finally:
            rejected: dict[int, list[uuid.UUID]] = {}
            for unit, error in report.rejected:
                item = unit.key
                rejected.setdefault(item.partition, []).append(item.run_id)
                self._dead(
                    item,
                    Failure.of(Reason.IMPORT_REJECTED, Stage.IMPORT, error, describe(error, limit=4_000)),
                )
            report.rejected.clear()
            for unit, error in report.failed:
                item = unit.key
                rejected.setdefault(item.partition, []).append(item.run_id)
                summary = f"{SERVER_ERROR_SUMMARY}: {describe(error, limit=4_000)}"
                self._dead(item, Failure.of(Reason.SERVER_ERROR, Stage.IMPORT, error, summary))
            report.failed.clear()
            for partition, run_ids in rejected.items():
                self._ledger.mark_rejected(partition, run_ids)
        self._crash("import", number)

    def _hold_recent(self, uncertain: list[Item]) -> None:
        """Raise UncertainTooRecent while an import announced by a ``pending`` marker may still be
        applied (marker time + settle time not yet reached): asking earlier could find nothing and
        import the run a second time (docs/RELIABILITY.md, seed 8)."""
        now = int(self._clock() * 1000)
        ready_at = [
            since + self._settle_ms
            for item in uncertain
            if (since := self._ledger.memory(item.partition).pending_since_ms(item.run_id.bytes)) is not None
        ]
        waiting = [at for at in ready_at if at > now]
        if waiting:
            # capped: an import was sent no later than now, whatever the writer's clock said
            wait_ms = min(max(waiting) - now, self._settle_ms + PENDING_MARGIN_MS)
            raise UncertainTooRecent(wait_ms / 1000, len(waiting))

    def _marked_project(self, item: Item) -> int | None:
        """The project named by the run's ``pending`` marker, if the run is uncertain."""
        return self._ledger.memory(item.partition).pending_project(item.run_id.bytes)

    def _announce(self, project_id: int, items: Sequence[Item], number: int) -> None:
        """Write and flush a fresh ``pending`` marker for the runs of one import request, right
        before it is sent (the first, a retry, each half of a split): a next owner waits out the
        import timeout from the latest request, not from an earlier marker (docs/EXACTLY_ONCE.md)."""
        by_partition: dict[int, list[uuid.UUID]] = {}
        for item in items:
            by_partition.setdefault(item.partition, []).append(item.run_id)
        for partition, run_ids in by_partition.items():
            self._ledger.mark_pending(partition, project_id, run_ids)
        self._outbox.flush()
        self._crash("pending", number)

    def _check_uncertain(self, project: Project, uncertain: list[Item]) -> None:
        """Ask Label Studio which uncertain runs it has; those are recorded, not imported again.

        Each run is looked up in the project its ``pending`` marker names, which is where its
        import may have gone, not where it routes now (a dated or renamed title may route it
        elsewhere); a found run is recorded ``imported`` in that project.
        """
        self._metrics.uncertain_checks.inc(len(uncertain))
        by_project: dict[int, list[Item]] = {}
        for item in uncertain:
            by_project.setdefault(self._marked_project(item) or project.id, []).append(item)
        for marked, group in by_project.items():
            found = self._found_in(marked, group, routed=project.id)
            by_partition: dict[int, list[tuple[uuid.UUID, list[int]]]] = {}
            for item in group:
                task_ids = found.get(str(item.run_id))
                if task_ids:
                    by_partition.setdefault(item.partition, []).append((item.run_id, task_ids))
                    self._duplicate(item, "label_studio")
            for partition, runs in by_partition.items():
                self._ledger.mark_imported(partition, marked, runs)
            log.info(
                "checked uncertain runs in Label Studio",
                extra={
                    "project_id": marked,
                    "routed_project_id": project.id,
                    "uncertain": len(group),
                    "found": len(found),
                },
            )

    def _found_in(self, project_id: int, items: list[Item], *, routed: int) -> dict[str, list[int]]:
        """The task ids Label Studio has for these runs in the project; a project other than the
        routed one that no longer exists holds nothing (the routed one's 404 is ProjectGone)."""
        try:
            return self._sink.existing(project_id, [str(item.run_id) for item in items])
        except ProjectGone:
            if project_id == routed:
                raise
            return {}

    def _project_gone(self, project: Project, items: list[Item]) -> None:
        log.warning("project disappeared; resolving its runs again", extra={"project_id": project.id})
        self._resolver.forget(project.id)
        for item in items:
            if item.state is not ItemState.NEW:
                continue
            if item.rerouted:
                error = UnknownProjectError(f"project {project.id} does not exist in Label Studio (404)")
                self._dead(item, Failure.of(Reason.UNKNOWN_PROJECT, Stage.IMPORT, error))
            else:
                item.rerouted = True
                item.project = None
                item.tasks = None

    def _rekey(self, item: Item) -> None:
        """Re-publish a record keyed otherwise than by its run_id's canonical form to the input
        topic under that key, so it lands in the partition whose ledger deduplicates the run; the
        original is committed with the batch (after the copy is flushed). A crash in between makes
        a second canonical copy, which that ledger drops like any duplicate (docs/EXACTLY_ONCE.md)."""
        record = item.record
        key = run_key(item.run_id)
        headers = [(k, v) for k, v in (record.headers or []) if k != H_ORIGINAL_KEY]
        headers.append((H_ORIGINAL_KEY, record.key if record.key is not None else b""))
        timestamp = record.timestamp if isinstance(record.timestamp, int) and record.timestamp >= 0 else None
        self._outbox.send(
            OutRecord(str(record.topic), key, record.value, headers=headers, timestamp_ms=timestamp)
        )
        item.state = ItemState.REKEYED
        self._metrics.rekeyed.inc()
        log.info(
            "re-published a record under its canonical key",
            extra={"partition": item.partition, "offset": record.offset, "run_id": str(item.run_id)},
        )

    def _duplicate(self, item: Item, source: str) -> None:
        item.state = ItemState.DUPLICATE
        self._metrics.duplicates.labels(source).inc()

    def _dead(self, item: Item, failure: Failure) -> None:
        failure = replace(failure, message=self._mask(failure.message))  # e.g. an error body echoing a token
        full, slim = dead_letter(item.record, failure, topic=self._dlq_topic, group_id=self._group_id)
        self._outbox.send(full, if_too_large=slim)
        item.state = ItemState.DEAD
        self._metrics.dead_lettered.labels(failure.reason, failure.stage.value).inc()
        log.warning(
            "dead-lettered a record",
            extra={
                "reason": failure.reason,
                "stage": failure.stage.value,
                "partition": item.partition,
                "offset": item.record.offset,
                "error": failure.message[:500],
            },
        )


TASK_OVERHEAD_BYTES = 300
"""About what a task adds to its run's share of the event in a request (keys, ids, run_id)."""


def _request_bytes(item: Item) -> int:
    """About what an item's tasks weigh in an import request: its event's size (the texts appear
    once across its tasks, ``meta`` in full on the first), a little per task, and the ``meta`` of
    every later task (at most ``INGEST_META_MAX_BYTES`` of metadata each, see ``tasks.py``)."""
    tasks = item.tasks or []
    size = len(item.record.value) if item.record.value is not None else 0
    if len(tasks) > 1:
        later_meta = len(json.dumps(tasks[1].get("meta"), ensure_ascii=False, default=str))
        size += later_meta * (len(tasks) - 1)
    return size + TASK_OVERHEAD_BYTES * len(tasks)


__all__ = ["Batch", "CrashHook", "Item", "ItemState", "Pipeline"]

"""Running a backfill: read a window of the input topic, import the selected runs through the pipeline.

The consumer's own parts do the work, with a group and ledger of the backfill's own
(``backfill.names_for``): :class:`~labelstudio_ingest.consumer.source.Source` (a group member, the
ledger restored on assignment, rewinds), :class:`~labelstudio_ingest.consumer.pipeline.Pipeline`
(pending → import → imported, Label Studio asked about uncertain runs) and the sink. What differs:
every run goes to one project (:class:`FixedResolver`), its tasks say which backfill made them
(:class:`BackfillSink`), records outside the selection are committed without being imported, and
the run ends when every partition's committed offset reached the end the topic had at the start.
Live ingestion's group and ledger are never read or written.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from kafka import KafkaAdminClient, KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError
from label_studio_sdk import LabelStudio

from labelstudio_ingest.consumer.backfill import Names, Selection, Tally, oldest, start_offset
from labelstudio_ingest.consumer.backoff import Backoff
from labelstudio_ingest.consumer.errors import LabelStudioUnavailable, Rebalanced, UncertainTooRecent
from labelstudio_ingest.consumer.ledger import Ledger
from labelstudio_ingest.consumer.logs import Masker
from labelstudio_ingest.consumer.metrics import Metrics
from labelstudio_ingest.consumer.outbox import Outbox
from labelstudio_ingest.consumer.pipeline import Batch, ItemState, Pipeline
from labelstudio_ingest.consumer.projects import Project, ProjectResolver
from labelstudio_ingest.consumer.settings import Settings
from labelstudio_ingest.consumer.sink import ImportReport, LabelStudioSink, Unit
from labelstudio_ingest.consumer.source import Source
from labelstudio_ingest.consumer.topics import ensure_topics, ledger_topic_configs, partition_count
from labelstudio_ingest.schemas import Event, EventDecodeError, Target, decode

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
PLAN_TIMEOUT_S = 15.0
"""Longest wait for the first record of each partition while planning (oldest time, true end)."""
DONE_CHECK_EVERY_S = 1.0
COMMITTED_TIMEOUT_MS = 1_000
"""Longest wait for the group's committed offsets of partitions another member holds."""
K = TypeVar("K")


class TopicMissingError(RuntimeError):
    """The input topic does not exist."""


class TargetGoneError(RuntimeError):
    """The target project was deleted while the backfill ran (Label Studio answered 404)."""


class FixedResolver(ProjectResolver):
    """Every run goes to the backfill's target, whatever project its event named."""

    def __init__(self, client: LabelStudio, project: Project) -> None:
        super().__init__(client, cache_ttl_s=0)
        self.project = project

    def resolve(self, target: Target) -> Project:
        """The target project (the event's own target is what a backfill overrides)."""
        return self.project

    def forget(self, project_id: int) -> None:
        """The project answered 404: a backfill has nowhere else to put its runs, so it stops."""
        raise TargetGoneError(f"the target project {project_id} no longer exists in Label Studio")


class BackfillSink(LabelStudioSink):
    """The consumer's sink; each task's ``meta.backfill`` says which backfill imported it and from where."""

    def __init__(self, *args: Any, backfill: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.backfill = backfill

    def import_units(
        self,
        project_id: int,
        units: Sequence[Unit[K]],
        report: ImportReport[K],
        on_imported: Callable[[Sequence[tuple[Unit[K], list[int]]]], None],
        before_request: Callable[[Sequence[Unit[K]]], None] | None = None,
        *,
        isolate: bool = False,
    ) -> None:
        """Stamp the tasks, then import them as live ingestion does."""
        for unit in units:
            stamp = self._stamp(getattr(unit.key, "event", None))
            for task in unit.tasks:
                task["meta"] = {**task.get("meta", {}), "backfill": stamp}
        super().import_units(project_id, units, report, on_imported, before_request, isolate=isolate)

    def _stamp(self, event: Event | None) -> dict[str, Any]:
        stamp: dict[str, Any] = {"name": self.backfill}
        if event is not None:
            stamp["original_target"] = event.target.model_dump(include={"project_id", "project_name"})
        return stamp


@dataclass(slots=True)
class Plan:
    """The offsets a backfill reads: per partition ``[start, end)``, ``end`` as at the start."""

    partitions: list[int]
    begin: dict[int, int]
    end: dict[int, int]
    start: dict[int, int]
    oldest_ms: int | None
    """The oldest record time the topic still holds (first record of each partition)."""

    @property
    def deleted(self) -> int:
        """Records already deleted from the topic (by retention)."""
        return sum(self.begin.values())


def reader(settings: Settings, suffix: str) -> KafkaConsumer:
    """A plain reader without a group (nothing committed)."""
    return KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers.split(","),
        client_id=f"labelstudio-ingest-backfill-{os.getpid()}-{suffix}",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **settings.kafka_security(),
    )


def input_partitions(settings: Settings) -> int:
    """Partitions of the input topic. Raises TopicMissingError when it does not exist."""
    admin = KafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers.split(","),
        client_id=f"labelstudio-ingest-backfill-{os.getpid()}",
        **settings.kafka_security(),
    )
    try:
        count = partition_count(admin, settings.topic)
    finally:
        admin.close()
    if not count:
        raise TopicMissingError(f"the input topic {settings.topic!r} does not exist")
    return count


def make_plan(settings: Settings, count: int, selection: Selection, stop: threading.Event) -> Plan:
    """Find where to start (the broker's time index) and where to end (the true high watermark).

    The end is taken from a fetch, not from ListOffsets: tansu 0.6 answers ListOffsets with the last
    batch's base offset + 1. The first record of each partition also gives the oldest time held.
    """
    consumer = reader(settings, "plan")
    try:
        tps = {p: TopicPartition(settings.topic, p) for p in range(count)}
        begin = {p: int(o) for p, o in _by_partition(consumer.beginning_offsets(list(tps.values()))).items()}
        listed = {p: int(o) for p, o in _by_partition(consumer.end_offsets(list(tps.values()))).items()}
        end = dict(listed)
        firsts: dict[int, int | None] = {}
        non_empty = [p for p in tps if listed[p] > begin[p]]
        consumer.assign([tps[p] for p in non_empty])
        for p in non_empty:
            consumer.seek(tps[p], begin[p])
        deadline = time.monotonic() + PLAN_TIMEOUT_S
        while len(firsts) < len(non_empty) and time.monotonic() < deadline and not stop.is_set():
            for tp, records in consumer.poll(timeout_ms=200, max_records=500).items():
                if records and tp.partition not in firsts:
                    firsts[tp.partition] = records[0].timestamp
                    consumer.pause(tp)
        for p in non_empty:
            high = consumer.highwater(tps[p])
            if high is not None:
                end[p] = max(end[p], int(high))
        start = dict(begin)
        if selection.since_ms is not None and non_empty:
            start = _since_offsets(consumer, tps, begin, end, selection.since_ms)
        return Plan(sorted(tps), begin, end, start, oldest(firsts.values()))
    finally:
        consumer.close(autocommit=False)


def _since_offsets(
    consumer: KafkaConsumer,
    tps: dict[int, TopicPartition],
    begin: dict[int, int],
    end: dict[int, int],
    since_ms: int,
) -> dict[int, int]:
    try:
        found = _by_partition(consumer.offsets_for_times(dict.fromkeys(tps.values(), since_ms)))
    except KafkaError as exc:  # a broker without a time index: read from the start, filter by time
        log.info("the broker cannot look up offsets by time", extra={"error": str(exc)})
        return dict(begin)
    start: dict[int, int] = {}
    for p in tps:
        answer = found.get(p)
        by_time = None if answer is None else (int(answer.offset), int(answer.timestamp))
        start[p] = start_offset(begin[p], end[p], by_time, since_ms)
    return start


def _by_partition(answer: dict[TopicPartition, Any]) -> dict[int, Any]:
    return {tp.partition: value for tp, value in answer.items()}


def seed_offsets(settings: Settings, names: Names, plan: Plan, *, restart: bool) -> dict[int, int]:
    """Commit the start offsets for the backfill's group where it has none (or all, with ``restart``).

    Returns the offset each partition resumes from. Committing while another process of the same
    backfill is in the group fails; that process's offsets then stand.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers.split(","),
        client_id=f"labelstudio-ingest-backfill-{os.getpid()}-seed",
        group_id=names.group_id,
        enable_auto_commit=False,
        **settings.kafka_security(),
    )
    try:
        tps = {p: TopicPartition(settings.topic, p) for p in plan.partitions}
        consumer.assign(list(tps.values()))
        resume: dict[int, int] = {}
        wanted: dict[TopicPartition, OffsetAndMetadata] = {}
        for p, tp in tps.items():
            committed = consumer.committed(tp)
            if restart or committed is None or int(committed) < plan.start[p]:
                wanted[tp] = OffsetAndMetadata(plan.start[p], "", -1)
                resume[p] = plan.start[p]
            else:
                resume[p] = min(int(committed), plan.end[p])
        if wanted:
            try:
                consumer.commit(wanted)
            except KafkaError as exc:
                log.warning(
                    "could not set the start offsets (is this backfill running elsewhere?)", exc_info=exc
                )
        return resume
    finally:
        consumer.close(autocommit=False)


def dry_run(
    settings: Settings, selection: Selection, plan: Plan, ledger_topic: str | None, stop: threading.Event
) -> Tally:
    """Count the runs a backfill would import, per kind and service, without writing anything.

    Runs the backfill's ledger says are already in the target (``ledger_topic``, when it exists) and
    further copies of one run are counted as already present.
    """
    tally = Tally(total=sum(plan.end[p] - plan.start[p] for p in plan.partitions))
    ledger = _restored_ledger(settings, plan, ledger_topic, stop) if ledger_topic else None
    consumer = reader(settings, "dry-run")
    seen: set[bytes] = set()
    try:
        tps = {p: TopicPartition(settings.topic, p) for p in plan.partitions if plan.end[p] > plan.start[p]}
        consumer.assign(list(tps.values()))
        for p, tp in tps.items():
            consumer.seek(tp, plan.start[p])
        left = set(tps)
        while left and not stop.is_set():
            for tp, records in consumer.poll(timeout_ms=200, max_records=1000).items():
                for record in records:
                    if record.offset >= plan.end[tp.partition]:
                        left.discard(tp.partition)
                        break
                    tally.read += 1
                    try:
                        event = decode(record.value, settings.limits)
                    except EventDecodeError:
                        tally.invalid += 1
                        continue
                    if not (selection.in_window(record.timestamp) and selection.matches(event)):
                        continue
                    run = event.run_id.bytes
                    if run in seen or (ledger is not None and ledger.memory(tp.partition).is_imported(run)):
                        tally.present += 1
                    else:
                        tally.add_match(event)
                    seen.add(run)
            for p in list(left):
                position = consumer.position(tps[p])
                if position is not None and int(position) >= plan.end[p]:
                    left.discard(p)
                    consumer.pause(tps[p])
    finally:
        consumer.close(autocommit=False)
        if ledger is not None:
            ledger.close()
    return tally


def _restored_ledger(
    settings: Settings, plan: Plan, ledger_topic: str, stop: threading.Event
) -> Ledger | None:
    """The backfill's ledger read to its end (None when the topic does not exist yet)."""
    admin = KafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers.split(","),
        client_id=f"labelstudio-ingest-backfill-{os.getpid()}",
        **settings.kafka_security(),
    )
    try:
        if partition_count(admin, ledger_topic) is None:
            return None
    finally:
        admin.close()
    ledger = Ledger(
        Outbox(None),  # read only: nothing is written
        ledger_topic,
        horizon_ms=int(settings.dedup_horizon_days * DAY_MS),
        max_run_ids=settings.dedup_max_run_ids,
        reader_factory=lambda: reader(settings, "ledger"),
    )
    left = set(plan.partitions)
    while left and not stop.is_set():
        left -= ledger.restore(sorted(left), 1.0)
    return ledger


@dataclass
class Runner:
    """One backfill run after planning: builds the consumer's parts and drives the batches."""

    settings: Settings
    selection: Selection
    names: Names
    project: Project
    client: LabelStudio
    plan: Plan
    committed: dict[int, int]
    stop: threading.Event
    on_progress: Callable[[Tally], None] = lambda tally: None
    tally: Tally = field(default_factory=Tally)
    generation: int | None = None
    source: Source | None = None

    def build(self) -> None:
        """Create the backfill's topics and connect its group member, ledger, sink and pipeline."""
        s = self.settings
        security = s.kafka_security()
        servers = s.bootstrap_servers.split(",")
        client_id = f"labelstudio-ingest-backfill-{os.getpid()}"
        horizon_ms = int(s.dedup_horizon_days * DAY_MS)
        admin = KafkaAdminClient(bootstrap_servers=servers, client_id=client_id, **security)
        try:
            ensure_topics(
                admin,
                topic=s.topic,
                ledger_topic=self.names.ledger_topic,
                dlq_topic=self.names.dlq_topic,
                create=s.create_topics,
                ledger_configs=ledger_topic_configs(horizon_ms, s.dedup_max_run_ids),
                stop=self.stop,
            )
        finally:
            admin.close()
        self.metrics = Metrics()
        self.outbox = Outbox.connect(s.bootstrap_servers, client_id, **security)
        self.ledger = Ledger(
            self.outbox,
            self.names.ledger_topic,
            horizon_ms=horizon_ms,
            max_run_ids=s.dedup_max_run_ids,
            reader_factory=lambda: reader(s, "ledger"),
        )
        consumer = KafkaConsumer(
            bootstrap_servers=servers,
            client_id=client_id,
            group_id=self.names.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=s.batch_size,
            max_poll_interval_ms=s.max_poll_interval_ms,
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=s.heartbeat_interval_ms,
            **security,
        )
        self.source = Source(
            consumer,
            s.topic,
            ledger=self.ledger,
            metrics=self.metrics,
            on_revoke=self.outbox.flush,
            restore_budget_s=max(0.2, s.max_poll_interval_ms / 4000),
        )
        self.sink = BackfillSink(
            self.client,
            str(s.label_studio_url),
            timeout_s=s.import_timeout_s,
            metrics=self.metrics,
            max_request_bytes=s.import_max_bytes,
            max_request_tasks=s.import_max_tasks,
            backfill=self.names.backfill,
        )
        self.pipeline = Pipeline(
            ledger=self.ledger,
            sink=self.sink,
            resolver=FixedResolver(self.client, self.project),
            outbox=self.outbox,
            metrics=self.metrics,
            limits=s.limits,
            dlq_topic=self.names.dlq_topic,
            group_id=self.names.group_id,
            mask=Masker(s.secrets()),
            settle_s=s.import_timeout_s,
            trace_url_template=s.trace_url_template,
            meta_max_bytes=s.meta_max_bytes,
        )
        self.backoff = Backoff(s.backoff_initial_s, s.backoff_max_s)
        self._batches = 0
        self._deadline: float | None = None
        self._last_done_check = 0.0
        self.tally.total = sum(max(0, self.plan.end[p] - self.committed[p]) for p in self.plan.partitions)

    def before_request(self, request: httpx.Request) -> None:
        """Hook of every Label Studio request: keep the membership, refuse to send after a rebalance
        or while the group has not confirmed this member lately (as the consumer does)."""
        if self.generation is not None and self.source is not None:
            self.source.keepalive(self.generation)
            self.source.confirm_membership(self.generation)

    def request_stop(self) -> None:
        """Stop after the batch in flight, which gets ``INGEST_SHUTDOWN_TIMEOUT_S`` to finish."""
        self._deadline = time.monotonic() + self.settings.shutdown_timeout_s
        if hasattr(self, "sink"):
            self.sink.deadline = self._deadline
        self.stop.set()

    # --- the loop ---------------------------------------------------------------------------------
    def run(self) -> bool:
        """Process batches until every partition is done (True) or a stop was requested (False)."""
        source = self.source
        assert source is not None
        source.subscribe()
        s = self.settings
        while not self.stop.is_set():
            source.restore_step()
            records = source.poll_batch(s.batch_size, s.batch_max_wait_ms / 1000, self.stop)
            if records:
                self._handle(records)
            self._skip_gaps()
            self.on_progress(self.tally)
            if self._finished():
                return True
        return False

    def _handle(self, records: list[Any]) -> None:
        source = self.source
        assert source is not None
        self._batches += 1
        end = self.plan.end
        in_range = [r for r in records if r.offset < end[r.partition]]
        matched: list[Any] = []
        events: list[Event] = []
        invalid = 0
        for record in in_range:
            try:
                event = decode(record.value, self.settings.limits)
            except EventDecodeError:
                invalid += 1
                continue
            if self.selection.in_window(record.timestamp) and self.selection.matches(event):
                matched.append(record)
                events.append(event)
        source.pause_all()
        self.generation = generation = source.generation
        try:
            batch = self.pipeline.start(matched, self._batches) if matched else None
            if batch is not None:
                if not self._process(batch, generation):
                    source.rewind(in_range)
                    return
                self.pipeline.finish(batch)
            offsets: dict[tuple[str, int], int] = {}
            for record in in_range:
                key = (str(record.topic), int(record.partition))
                offsets[key] = max(offsets.get(key, 0), int(record.offset) + 1)
            if offsets and not source.commit(offsets, generation):
                return  # delivered again; the ledger makes that harmless
            for (_, partition), offset in offsets.items():
                self.committed[partition] = max(self.committed.get(partition, 0), offset)
            self._count(in_range, events, invalid, batch)
        except Rebalanced:
            log.info("the assignment changed during a batch; it will be read again")
            self.outbox.flush()
            source.rewind(in_range)
        finally:
            self.generation = None
            source.resume_ready()
            self._pause_finished()

    def _process(self, batch: Batch, generation: int) -> bool:
        """The pipeline's steps with the consumer's retries; False when a stop leaves no time."""
        source = self.source
        assert source is not None
        while True:
            try:
                self.pipeline.process(batch)
                self.backoff.reset()
                return True
            except LabelStudioUnavailable as exc:
                if self.pipeline.escalate(
                    batch, exc, after=self.settings.isolate_after_failures, stopping=self.stop.is_set()
                ):
                    continue
                if self._deadline is not None and time.monotonic() >= self._deadline:
                    return False
                delay = self.backoff.next_delay()
                if self._deadline is not None:  # a stop was asked: retry only within its time
                    delay = min(delay, max(0.0, self._deadline - time.monotonic()))
                log.warning(
                    "Label Studio unavailable; retrying the batch",
                    extra={"kind": exc.kind, "retry_in_s": round(delay, 2), "error": str(exc)},
                )
                source.wait(delay, generation)
            except UncertainTooRecent as exc:
                if self._deadline is not None and time.monotonic() + exc.wait_s > self._deadline:
                    return False
                log.info(
                    "uncertain runs too recent to ask Label Studio; waiting",
                    extra={"runs": exc.runs, "wait_s": round(exc.wait_s, 2)},
                )
                # a stop cuts the wait short once; the next attempt then fits in the time left or gives up
                source.wait(exc.wait_s, generation, None if self.stop.is_set() else self.stop)

    def _count(self, in_range: list[Any], events: list[Event], invalid: int, batch: Batch | None) -> None:
        tally = self.tally
        tally.read += len(in_range)
        tally.invalid += invalid
        for event in events:
            tally.add_match(event)
        if batch is not None:
            tally.imported += batch.count(ItemState.IMPORTED)
            tally.present += batch.count(ItemState.DUPLICATE)
            tally.dead_lettered += batch.count(ItemState.DEAD)

    # --- the end ----------------------------------------------------------------------------------
    def _pause_finished(self) -> None:
        """Stop fetching partitions that reached their end (live traffic beyond it is not ours)."""
        source = self.source
        assert source is not None
        done = [
            TopicPartition(self.settings.topic, p)
            for p in source.assigned
            if self.committed.get(p, -1) >= self.plan.end[p]
        ]
        if done:
            source.consumer.pause(*done)

    def _skip_gaps(self) -> None:
        """Commit the end of partitions whose position passed it without an in-range record to commit."""
        source = self.source
        assert source is not None
        for p in sorted(source.assigned - source.restoring):
            if self.committed.get(p, -1) >= self.plan.end[p]:
                continue
            try:
                position = source.consumer.position(TopicPartition(self.settings.topic, p), timeout_ms=0)
            except KafkaError:
                continue
            past_end = position is not None and int(position) >= self.plan.end[p]
            if past_end and source.commit({(self.settings.topic, p): self.plan.end[p]}, source.generation):
                self.committed[p] = self.plan.end[p]
        self._pause_finished()

    def _finished(self) -> bool:
        """Every partition's committed offset reached its end (others' partitions asked of the group)."""
        source = self.source
        assert source is not None
        end = self.plan.end
        if not source.assigned or source.restoring:
            return False
        if any(self.committed.get(p, -1) < end[p] for p in source.assigned):
            return False
        if all(self.committed.get(p, -1) >= end[p] for p in self.plan.partitions):
            return True
        now = time.monotonic()
        if now - self._last_done_check < DONE_CHECK_EVERY_S:
            return False
        self._last_done_check = now
        for p in self.plan.partitions:
            if p in source.assigned or self.committed.get(p, -1) >= end[p]:
                continue
            try:
                offset = source.consumer.committed(
                    TopicPartition(self.settings.topic, p), timeout_ms=COMMITTED_TIMEOUT_MS
                )
            except KafkaError:
                return False
            if offset is not None:
                self.committed[p] = max(self.committed.get(p, -1), int(offset))
        return all(self.committed.get(p, -1) >= end[p] for p in self.plan.partitions)

    def close(self, *, clean: bool = True) -> None:
        """Flush ledger records and dead letters, leave the group, close the clients."""
        if self.source is None:
            return
        if clean:
            try:
                self.outbox.flush(timeout_s=5.0)
            except Exception:
                log.warning("could not flush the outbox at shutdown", exc_info=True)
        self.source.close(5.0)
        self.ledger.close()
        self.outbox.close(5.0)


__all__ = [
    "BackfillSink",
    "FixedResolver",
    "Plan",
    "Runner",
    "TargetGoneError",
    "TopicMissingError",
    "dry_run",
    "input_partitions",
    "make_plan",
    "reader",
    "seed_offsets",
]

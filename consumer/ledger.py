"""The dedup ledger: a topic, co-partitioned with the input, of what happened to each run_id.

Ledger partition *p* holds the records about the run_ids of input partition *p* (the consumer
writes each ledger record to the *same partition number* as the input records it describes), so
the owner of input partition *p* finds every run_id it could see again by reading ledger
partition *p*. One record describes many runs of one batch (one produce call per batch and
partition, not per run); values are JSON:

* ``{"v": 1, "state": "pending", "project_id": P, "run_ids": [...]}`` — written and flushed
  *before each* import request of those runs (a retry or a half of a split gets a fresh one);
* ``{"v": 1, "state": "imported", "project_id": P, "runs": [[run_id, [task ids]], ...]}`` — after
  the import succeeded;
* ``{"v": 1, "state": "rejected", "run_ids": [...]}`` — Label Studio refused the runs (4xx),
  nothing of them exists.

For each run_id the last record naming it wins. A run_id whose last state is ``pending`` is
*uncertain*: its import may or may not have happened, so Label Studio is asked before it is
imported again. Keys are unique per record (``<state>:<partition>:<random>``), so compaction
never merges records; the topic is bounded by ``retention.ms`` (the dedup horizon).
docs/EXACTLY_ONCE.md has the argument and the crash-point table.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from kafka import TopicPartition

from labelstudio_ingest.consumer.dedup import PartitionMemory
from labelstudio_ingest.consumer.outbox import Outbox, OutRecord

log = logging.getLogger(__name__)

VERSION = 1
RESTORE_POLL_RECORDS = 1_000
RUNS_PER_RECORD = 1_000
"""Most runs in one ledger record (about 50 KB), far below any broker's record size limit."""
TASK_IDS_PER_RECORD = 20_000
"""Most task ids in one ``imported`` record (about 200 KB): runs of 256 prompts would otherwise
make a record of 1,000 runs several MB, over a default broker's 1 MB limit."""

PENDING_MARGIN_MS = 2_000
"""Added to the time of a ``pending`` marker read back from the ledger: its Kafka timestamp comes
from the writer's clock, which may be a little behind ours, and the import it announced left a
moment after it. Markers this process wrote itself need no margin."""

RECORD_OVERHEAD_BYTES = 128
"""What a Kafka record costs besides its value, rounded up: the key (``imported:<p>:<32 hex>``, under
50 B), the record's own varints and timestamp delta (~20 B), and its share of a batch header (61 B)
when, at worst, every record travels in its own batch."""
MARKERS_PER_RUN = 4
"""``pending`` markers the ledger sizing allows per run: the first request and three more (a retry, or
the halves of a split request). Each import request is preceded by its own marker."""

State = Literal["pending", "imported", "rejected"]


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One ledger record: what happened to some runs of one input partition."""

    state: State
    run_ids: tuple[uuid.UUID, ...]
    project_id: int | None = None
    task_ids: tuple[tuple[int, ...], ...] = ()
    """For ``imported``: the task ids of each run, in ``run_ids`` order."""


def encode_entry(entry: LedgerEntry) -> bytes:
    """The record value of an entry."""
    body: dict[str, Any] = {"v": VERSION, "state": entry.state}
    if entry.project_id is not None:
        body["project_id"] = entry.project_id
    if entry.state == "imported":
        body["runs"] = [[str(r), list(t)] for r, t in zip(entry.run_ids, entry.task_ids, strict=True)]
    else:
        body["run_ids"] = [str(r) for r in entry.run_ids]
    return json.dumps(body, separators=(",", ":")).encode()


def decode_entry(value: bytes | None) -> LedgerEntry:
    """The entry of a record value. Raises ValueError for anything that is not a ledger entry."""
    if value is None:
        raise ValueError("a ledger record without a value")
    body = json.loads(value)
    if not isinstance(body, dict) or body.get("state") not in {"pending", "imported", "rejected"}:
        raise ValueError(f"not a ledger entry: {value[:100]!r}")
    state = body["state"]
    project_id = body.get("project_id")
    if state != "rejected" and not isinstance(project_id, int):
        raise ValueError(f"ledger entry without project_id: {value[:100]!r}")
    if state == "imported":
        runs = body.get("runs")
        if not isinstance(runs, list):
            raise ValueError(f"imported entry without runs: {value[:100]!r}")
        return LedgerEntry(
            state,
            tuple(uuid.UUID(r) for r, _ in runs),
            project_id,
            tuple(tuple(int(i) for i in t) for _, t in runs),
        )
    run_ids = body.get("run_ids")
    if not isinstance(run_ids, list):
        raise ValueError(f"{state} entry without run_ids: {value[:100]!r}")
    return LedgerEntry(state, tuple(uuid.UUID(r) for r in run_ids), project_id)


class Ledger:
    """Per-partition dedup memory, kept in step with the ledger topic.

    Writes go through the shared :class:`Outbox`; callers flush it at the points the protocol
    needs (pending markers before an import, everything before an offset commit).
    """

    def __init__(
        self,
        outbox: Outbox,
        topic: str,
        *,
        horizon_ms: int,
        max_run_ids: int,
        reader_factory: Callable[[], Any],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._outbox = outbox
        self.topic = topic
        self._horizon_ms = horizon_ms
        self._max_run_ids = max_run_ids
        self._reader_factory = reader_factory
        self._reader: Any = None
        self._clock = clock
        self._memories: dict[int, PartitionMemory] = {}
        self._targets: dict[int, int] = {}

    # --- state --------------------------------------------------------------------------------
    def retain(self, partitions: Iterable[int]) -> None:
        """Forget the memory of every partition not in ``partitions`` (no longer ours)."""
        keep = set(partitions)
        for partition in [p for p in self._memories if p not in keep]:
            del self._memories[partition]
            self._targets.pop(partition, None)

    def memory(self, partition: int) -> PartitionMemory:
        """The memory of a partition (created empty when new)."""
        memory = self._memories.get(partition)
        if memory is None:
            memory = PartitionMemory(horizon_ms=self._horizon_ms, max_run_ids=self._max_run_ids)
            self._memories[partition] = memory
        return memory

    def remembered(self) -> int:
        """Imported run_ids remembered over all partitions."""
        return sum(len(m) for m in self._memories.values())

    # --- writes -------------------------------------------------------------------------------
    def mark_pending(self, partition: int, project_id: int, run_ids: Sequence[uuid.UUID]) -> None:
        """Queue pending markers (flush the outbox before importing); the runs become uncertain."""
        for chunk in _chunks(run_ids):
            self._write(partition, LedgerEntry("pending", tuple(chunk), project_id))
        memory = self.memory(partition)
        now = self._now_ms()
        for run_id in run_ids:
            memory.pending_marker(run_id.bytes, project_id, now)

    def mark_imported(
        self, partition: int, project_id: int, runs: Sequence[tuple[uuid.UUID, Sequence[int]]]
    ) -> None:
        """Queue an imported record; the runs are duplicates from now on."""
        for chunk in _imported_chunks(runs):
            entry = LedgerEntry(
                "imported", tuple(r for r, _ in chunk), project_id, tuple(tuple(t) for _, t in chunk)
            )
            self._write(partition, entry)
        memory = self.memory(partition)
        now = self._now_ms()
        for run_id, _ in runs:
            memory.imported(run_id.bytes, now)

    def mark_rejected(self, partition: int, run_ids: Sequence[uuid.UUID]) -> None:
        """Queue a rejected record: Label Studio refused the runs, so nothing of them exists."""
        for chunk in _chunks(run_ids):
            self._write(partition, LedgerEntry("rejected", tuple(chunk)))
        memory = self.memory(partition)
        for run_id in run_ids:
            memory.forget(run_id.bytes)

    def not_applied(self, partition: int, run_id: uuid.UUID) -> None:
        """An import certainly never reached Label Studio: the run is not uncertain (memory only)."""
        self.memory(partition).not_pending(run_id.bytes)

    def _write(self, partition: int, entry: LedgerEntry) -> None:
        key = f"{entry.state}:{partition}:{uuid.uuid4().hex}".encode()
        self._outbox.send(OutRecord(self.topic, key, encode_entry(entry), partition=partition))

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # --- restore ------------------------------------------------------------------------------
    def restore(self, partitions: Iterable[int], budget_s: float) -> set[int]:
        """Read the ledger partitions from each memory's position towards their end.

        Stops after about ``budget_s`` seconds so the caller can keep its group membership
        alive; returns the partitions that are now up to date.
        """
        wanted = sorted(set(partitions))
        if not wanted:
            return set()
        tps = {p: TopicPartition(self.topic, p) for p in wanted}
        if self._reader is None:
            self._reader = self._reader_factory()
        reader = self._reader
        starting = [p for p in wanted if p not in self._targets]
        if set(reader.assignment()) != set(tps.values()):
            reader.assign(list(tps.values()))
            starting = wanted
        if starting:
            ends = reader.end_offsets([tps[p] for p in starting])
            horizon_start = self._horizon_offsets(reader, [tps[p] for p in starting], ends)
            for p in starting:
                memory = self.memory(p)
                memory.position = max(memory.position, horizon_start.get(tps[p], 0))
                reader.seek(tps[p], memory.position)
                self._targets[p] = int(ends[tps[p]])
                memory.expire(self._now_ms())
        deadline = time.monotonic() + budget_s
        done: set[int] = set()
        while True:
            done = {p for p in wanted if self.memory(p).position >= self._targets[p]}
            if len(done) == len(wanted) or time.monotonic() >= deadline:
                break
            batch = reader.poll(timeout_ms=200, max_records=RESTORE_POLL_RECORDS)
            for records in batch.values():
                self._apply(records)
            for p in wanted:
                if p not in done:
                    position = reader.position(tps[p])
                    if position is not None:
                        self.memory(p).position = max(self.memory(p).position, int(position))
                    # The fetch's high watermark is right where ListOffsets may not be: tansu 0.6 answers
                    # the last batch's base offset + 1, which would end the restore inside that batch.
                    high = reader.highwater(tps[p])
                    if high is not None and int(high) > self._targets[p]:
                        self._targets[p] = int(high)
        for p in done:
            del self._targets[p]
        if len(done) == len(wanted):
            reader.assign([])  # nothing to read until the next assignment: stop fetching
        return done

    def _horizon_offsets(
        self, reader: Any, tps: list[TopicPartition], ends: dict[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        """The first ledger offset within the horizon per partition ({} when the broker cannot say).

        No record as new as the horizon start means "nothing to read": the end offset.
        """
        since = self._now_ms() - self._horizon_ms
        try:
            found = reader.offsets_for_times(dict.fromkeys(tps, since))
        except Exception as exc:  # an optimisation only: reading from the start is always correct
            log.info("cannot look up ledger offsets by time", extra={"error": str(exc)})
            return {}
        return {tp: int(ends[tp]) if meta is None else int(meta.offset) for tp, meta in found.items()}

    def _apply(self, records: Iterable[Any]) -> None:
        cutoff = self._now_ms() - self._horizon_ms
        for record in records:
            memory = self.memory(record.partition)
            memory.position = max(memory.position, record.offset + 1)
            at_ms = record.timestamp if record.timestamp is not None and record.timestamp >= 0 else None
            if at_ms is not None and at_ms < cutoff:
                continue
            try:
                entry = decode_entry(record.value)
            except (TypeError, ValueError) as exc:
                log.warning(
                    "skipping a ledger record that is not ours",
                    extra={"partition": record.partition, "offset": record.offset, "error": str(exc)},
                )
                continue
            for run_id in entry.run_ids:
                run = run_id.bytes
                if entry.state == "pending":
                    assert entry.project_id is not None
                    # the record's Kafka timestamp is when the marker was written (no format change); without
                    # one, now: later than the truth, so a wait is only ever longer, never too short
                    written = at_ms + PENDING_MARGIN_MS if at_ms is not None else self._now_ms()
                    memory.pending_marker(run, entry.project_id, written)
                elif entry.state == "imported":
                    memory.imported(run, at_ms if at_ms is not None else self._now_ms())
                else:
                    memory.forget(run)

    def close(self) -> None:
        """Close the ledger reader."""
        if self._reader is not None:
            self._reader.close(autocommit=False, timeout_ms=2000)
            self._reader = None


def bytes_per_run(max_tasks_per_run: int) -> int:
    """Ledger bytes one run may take at worst: ``MARKERS_PER_RUN`` one-run ``pending`` records and one
    one-run ``imported`` record naming ``max_tasks_per_run`` ten-digit task ids, measured with this
    codec (about 2.9 KB for 256 tasks, 400 B for one).

    Used to size the ledger topic's ``retention.bytes``: too small a bound deletes markers of runs
    the memory still counts on, and a restart then imports them again.
    """
    run = (uuid.UUID(int=(1 << 128) - 1),)
    big = (1 << 31) - 1
    pending = len(encode_entry(LedgerEntry("pending", run, big)))
    imported = len(encode_entry(LedgerEntry("imported", run, big, ((big,) * max_tasks_per_run,))))
    return MARKERS_PER_RUN * (RECORD_OVERHEAD_BYTES + pending) + RECORD_OVERHEAD_BYTES + imported


T = TypeVar("T")


def _chunks(items: Sequence[T]) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), RUNS_PER_RECORD):
        yield items[start : start + RUNS_PER_RECORD]


def _imported_chunks(
    runs: Sequence[tuple[uuid.UUID, Sequence[int]]],
) -> Iterable[Sequence[tuple[uuid.UUID, Sequence[int]]]]:
    """``runs`` cut into records of at most ``RUNS_PER_RECORD`` runs and ``TASK_IDS_PER_RECORD``
    task ids (one run's ids are never split; a run has at most ``max_inputs`` tasks)."""
    start = ids = 0
    for end, (_, task_ids) in enumerate(runs):
        if end > start and (end - start >= RUNS_PER_RECORD or ids + len(task_ids) > TASK_IDS_PER_RECORD):
            yield runs[start:end]
            start, ids = end, 0
        ids += len(task_ids)
    if start < len(runs):
        yield runs[start:]


__all__ = [
    "MARKERS_PER_RUN",
    "PENDING_MARGIN_MS",
    "RECORD_OVERHEAD_BYTES",
    "RUNS_PER_RECORD",
    "VERSION",
    "Ledger",
    "LedgerEntry",
    "bytes_per_run",
    "decode_entry",
    "encode_entry",
]

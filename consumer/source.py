"""The input side: a group member with manual commits, pause/resume, ledger restore and lag.

Partitions are paused while a batch is processed (so that :meth:`Source.keepalive` can call
``poll()`` to stay in the group without fetching more), and each newly assigned partition stays
paused until its ledger partition has been read (:meth:`Source.restore_step`). A rebalance while
a batch is in flight abandons the batch: its retained partitions are rewound to the batch's
first offsets (kafka-python keeps fetch positions of retained partitions), and the dedup ledger
makes the re-delivery harmless.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError

from labelstudio_ingest.consumer.errors import Rebalanced
from labelstudio_ingest.consumer.ledger import Ledger
from labelstudio_ingest.consumer.metrics import Metrics

log = logging.getLogger(__name__)

IDLE_POLL_MS = 200
"""Longest single ``poll()``: the loop checks for SIGTERM and restores at least this often."""
KEEPALIVE_EVERY_S = 0.5
LAG_EVERY_S = 1.0


class Source:
    """Wraps a subscribed :class:`KafkaConsumer`; every method runs on the consumer's thread."""

    def __init__(
        self,
        consumer: KafkaConsumer,
        topic: str,
        *,
        ledger: Ledger,
        metrics: Metrics,
        on_revoke: Callable[[], None] = lambda: None,
        restore_budget_s: float = 1.0,
    ) -> None:
        self.consumer = consumer
        self.topic = topic
        self._ledger = ledger
        self._metrics = metrics
        self._on_revoke = on_revoke
        self._restore_budget_s = restore_budget_s
        self.generation = 0
        """Incremented on every revocation and assignment; a batch remembers the one it began in."""
        self.assigned: frozenset[int] = frozenset()
        self.restoring: set[int] = set()
        self._processing = False
        self._stash: list[Any] = []
        self._committed: dict[int, int] = {}
        self._last_keepalive = 0.0
        self._lag_updated = 0.0
        self._rewind_on_assign: dict[int, int] = {}
        """First offsets of an abandoned batch whose partitions were revoked when it was abandoned."""
        self._joined_at = float("-inf")
        """``time.monotonic()`` of the last assignment: the group confirmed the member then."""

    # --- group membership -----------------------------------------------------------------------
    def subscribe(self) -> None:
        """Join the group (the join itself happens in the first ``poll()``)."""
        self.consumer.subscribe([self.topic], listener=_Listener(self))

    def _revoked(self, revoked: Iterable[TopicPartition]) -> None:
        partitions = {tp.partition for tp in revoked if tp.topic == self.topic}
        self.generation += 1
        if not partitions:
            return
        self.assigned = self.assigned - partitions
        self.restoring -= partitions
        self._stash = [r for r in self._stash if r.partition not in partitions]
        for partition in partitions:
            self._committed.pop(partition, None)
            _remove_label(self._metrics, self.topic, partition)
        self._metrics.partitions_assigned.set(len(self.assigned))
        log.info("partitions revoked", extra={"partitions": sorted(partitions)})
        try:
            self._on_revoke()
        except Exception:
            log.warning("flushing before revocation failed", exc_info=True)

    def _assigned(self, assigned: Iterable[TopicPartition]) -> None:
        partitions = {tp.partition for tp in assigned if tp.topic == self.topic}
        self.generation += 1
        self._joined_at = time.monotonic()
        self.assigned = frozenset(self.assigned | partitions)
        self._ledger.retain(self.assigned)
        self.restoring |= partitions
        rewind, self._rewind_on_assign = self._rewind_on_assign, {}
        for partition, offset in rewind.items():
            if partition in partitions:
                self.consumer.seek(TopicPartition(self.topic, partition), offset)
        if partitions:
            self.consumer.pause(*self._tps(partitions))
        self._metrics.partitions_assigned.set(len(self.assigned))
        self._metrics.rebalances.inc()
        log.info("partitions assigned", extra={"partitions": sorted(partitions)})

    # --- restore --------------------------------------------------------------------------------
    def restore_step(self) -> None:
        """Read a slice of the ledger for partitions still restoring; resume the finished ones."""
        if not self.restoring:
            return
        started = time.monotonic()
        done = self._ledger.restore(sorted(self.restoring), self._restore_budget_s)
        self.restoring -= done
        if done:
            if not self._processing:
                self.consumer.resume(*self._tps(done))
            self._metrics.ledger_run_ids.set(self._ledger.remembered())
            log.info(
                "dedup state restored from the ledger",
                extra={
                    "partitions": sorted(done),
                    "remembered_run_ids": self._ledger.remembered(),
                    "seconds": round(time.monotonic() - started, 3),
                },
            )

    # --- fetching -------------------------------------------------------------------------------
    def poll_batch(self, max_records: int, max_wait_s: float, stop: threading.Event) -> list[Any]:
        """Up to ``max_records`` records: waits at most ``IDLE_POLL_MS`` for the first one, then at
        most ``max_wait_s`` for more. Records polled across a rebalance are dropped (re-fetched)."""
        records, self._stash = self._stash, []
        generation = self.generation
        deadline = time.monotonic() + max_wait_s if records else None
        while len(records) < max_records and not stop.is_set():
            if deadline is None:
                timeout_ms = IDLE_POLL_MS
            else:
                timeout_ms = int(max(0.0, deadline - time.monotonic()) * 1000)
            polled = self.consumer.poll(timeout_ms=timeout_ms, max_records=max_records - len(records))
            for partition_records in polled.values():
                records.extend(partition_records)
            if self.generation != generation:
                self.rewind(records)
                return []
            if not records:
                return []
            if deadline is None:
                deadline = time.monotonic() + max_wait_s
            if time.monotonic() >= deadline:
                break
        return records

    def pause_all(self) -> None:
        """Stop fetching while a batch is processed (``poll()`` then only keeps us in the group)."""
        self._processing = True
        assignment = self.consumer.assignment()
        if assignment:
            self.consumer.pause(*assignment)

    def resume_ready(self) -> None:
        """Fetch again from every assigned partition that is not restoring."""
        self._processing = False
        ready = [tp for tp in self.consumer.assignment() if tp.partition not in self.restoring]
        if ready:
            self.consumer.resume(*ready)

    def keepalive(self, generation: int) -> None:
        """Call ``poll()`` (partitions paused) so a long batch keeps the group membership.

        Raises:
            Rebalanced: the assignment changed since ``generation``.
        """
        now = time.monotonic()
        if now - self._last_keepalive >= KEEPALIVE_EVERY_S:
            self._last_keepalive = now
            self._poll_paused(0)
        if self.generation != generation:
            raise Rebalanced()

    def confirm_membership(self, generation: int) -> None:
        """Return once the group has recently confirmed this member, polling (paused) until it has.

        A member frozen (SIGSTOP) or cut off from the coordinator for longer than the session
        timeout has lost its partitions, but kafka-python only marks the coordinator dead: the
        revoke callback comes later, in a ``poll()`` that completes a rejoin. So a request is sent
        only while a heartbeat was answered within half the session timeout, the coordinator is
        known and the group is stable with no rejoin pending; otherwise this polls until that
        holds again or the assignment changes.

        Raises:
            Rebalanced: the assignment changed since ``generation``, or the membership could not
                be confirmed within the session timeout.
        """
        deadline = time.monotonic() + self._session_timeout_s()
        while not self._member_confirmed():
            if self.generation != generation or time.monotonic() >= deadline:
                raise Rebalanced()
            self._poll_paused(IDLE_POLL_MS)
        if self.generation != generation:
            raise Rebalanced()

    def _session_timeout_s(self) -> float:
        config = getattr(self.consumer, "config", None) or {}
        return float(config.get("session_timeout_ms", 10_000)) / 1000

    def _member_confirmed(self) -> bool:
        """Whether the group confirmed this member recently: an assignment or an answered heartbeat
        (kafka-python 3 coordinator internals; a consumer without them, e.g. a unit-test fake, is
        taken at its generation's word)."""
        coordinator = getattr(self.consumer, "_coordinator", None)
        heartbeat = getattr(coordinator, "heartbeat", None)
        if coordinator is None or heartbeat is None:
            return True
        # not heartbeat.last_reset: finding the coordinator again resets it, before any answer
        answered = max(heartbeat.last_receive, self._joined_at)
        return bool(
            time.monotonic() - answered < self._session_timeout_s() / 2
            and coordinator.stable()
            and not coordinator.need_rejoin()
            and not coordinator.coordinator_unknown()
        )

    def wait(self, seconds: float, generation: int, stop: threading.Event | None = None) -> None:
        """Wait (paused, still polling) for ``seconds`` or until ``stop`` is set.

        Raises:
            Rebalanced: the assignment changed since ``generation``.
        """
        deadline = time.monotonic() + seconds
        while stop is None or not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._poll_paused(int(min(left * 1000, IDLE_POLL_MS)))
            if self.generation != generation:
                raise Rebalanced()

    def _poll_paused(self, timeout_ms: int) -> None:
        polled = self.consumer.poll(timeout_ms=timeout_ms)
        for partition_records in polled.values():  # normally none: everything is paused
            self._stash.extend(partition_records)

    def rewind(self, records: Iterable[Any]) -> None:
        """Make the records of an abandoned batch come again: seek each partition back to its first.

        A partition that is revoked right now (a rebalance in progress) is sought when it is
        assigned again: kafka-python keeps the fetch position of a partition that stays with the
        member across an eager rebalance, so without the seek those records would be skipped. A
        partition that goes to another member starts there from the committed offset anyway.
        """
        first: dict[int, int] = {}
        for record in records:
            if record.topic == self.topic:
                first[record.partition] = min(first.get(record.partition, record.offset), record.offset)
        self._stash = [r for r in self._stash if r.partition not in first]
        for partition, offset in first.items():
            if partition in self.assigned:
                self.consumer.seek(TopicPartition(self.topic, partition), offset)
            else:
                self._rewind_on_assign[partition] = min(offset, self._rewind_on_assign.get(partition, offset))

    # --- committing -----------------------------------------------------------------------------
    def commit(self, offsets: Mapping[tuple[str, int], int], generation: int) -> bool:
        """Commit ``offsets`` if the batch's generation is still current; False when not committed."""
        if generation != self.generation:
            return False
        wanted = {
            TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)
            for (topic, partition), offset in offsets.items()
            if partition in self.assigned
        }
        if not wanted:
            return True
        try:
            self.consumer.commit(wanted)
        except KafkaError as exc:
            log.warning(
                "offset commit failed; the records will be delivered again", extra={"error": str(exc)}
            )
            return False
        for tp, meta in wanted.items():
            self._committed[tp.partition] = meta.offset
        return True

    def update_lag(self) -> None:
        """Set ``ingest_consumer_lag`` for each assigned partition (at most once a second)."""
        now = time.monotonic()
        if now - self._lag_updated < LAG_EVERY_S:
            return
        self._lag_updated = now
        for partition in self.assigned:
            tp = TopicPartition(self.topic, partition)
            try:
                high = self.consumer.highwater(tp)
            except KafkaError:
                continue
            if high is None:
                continue
            base = self._committed.get(partition)
            if base is None:
                try:
                    base = self.consumer.position(tp, timeout_ms=0)
                except KafkaError:
                    base = None
            if base is not None:
                lag = max(0, int(high) - int(base))
                self._metrics.consumer_lag.labels(self.topic, str(partition)).set(lag)

    def close(self, timeout_s: float = 10.0) -> None:
        """Leave the group and close the consumer (no automatic commit)."""
        try:
            self.consumer.close(autocommit=False, timeout_ms=int(timeout_s * 1000))
        except KafkaError:
            log.warning("consumer did not close cleanly", exc_info=True)

    def _tps(self, partitions: Iterable[int]) -> list[TopicPartition]:
        return [TopicPartition(self.topic, p) for p in sorted(partitions)]


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, source: Source) -> None:
        self._source = source

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._source._revoked(revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._source._assigned(assigned)


def _remove_label(metrics: Metrics, topic: str, partition: int) -> None:
    with contextlib.suppress(KeyError):
        metrics.consumer_lag.remove(topic, str(partition))


__all__ = ["Source"]

"""Kafka for the ``dlq`` commands: connection settings, reading a topic to its end, replaying records.

The dead-letter topic is read with manually assigned partitions and no consumer group, so
inspecting or replaying never commits offsets or disturbs the consumer service. Every wait is
bounded by ``timeout_s``: an unreachable broker is a :class:`KafkaUnavailable`, not a hang.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from labelstudio_ingest.consumer.dlq import DeadLetter
from labelstudio_ingest.consumer.settings import KafkaConnection


class KafkaUnavailable(Exception):
    """The broker did not answer (or refused) within the time allowed."""


def _client_options(conn: KafkaConnection, timeout_s: float) -> dict[str, Any]:
    timeout_ms = max(1_000, int(timeout_s * 1000))
    return {
        "bootstrap_servers": conn.bootstrap_servers.split(","),
        "client_id": "labelstudio-ingest-dlq",
        "bootstrap_timeout_ms": timeout_ms,
        **conn.kafka_security(),
    }


def read_topic(conn: KafkaConnection, topic: str, timeout_s: float) -> Iterator[DeadLetter]:
    """Every record ``topic`` held when reading began (none if it does not exist); see :func:`_read`.

    Raises :class:`KafkaUnavailable` when the broker does not answer, or when reading makes no
    progress for ``timeout_s``.
    """
    timeout_ms = max(1_000, int(timeout_s * 1000))
    try:
        consumer = KafkaConsumer(
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **_client_options(conn, timeout_s),
        )
    except KafkaError as exc:
        raise KafkaUnavailable(f"cannot reach Kafka at {conn.bootstrap_servers}: {exc}") from exc
    try:
        yield from _read(consumer, topic, timeout_ms)
    except KafkaError as exc:
        raise KafkaUnavailable(f"reading {topic} from {conn.bootstrap_servers} failed: {exc}") from exc
    finally:
        consumer.close()


def _read(consumer: KafkaConsumer, topic: str, timeout_ms: int) -> Iterator[DeadLetter]:
    """Each partition from its beginning up to a target offset fixed once, then never moved.

    The target is the larger of ``end_offsets()`` (taken before the first poll) and the high
    watermark of the first fetch response for that partition. Both are needed: tansu 0.6 answers
    ListOffsets(latest) with the last record batch's base offset + 1, which falls inside a batch of
    several records (several dead letters flushed together), while the fetch's high watermark is
    right; on Kafka the two are equal. The target is never raised afterwards, so records written
    after a partition's first fetch -- such as replayed records that fail again and land back in this
    topic -- are not chased: ``dlq replay`` (which reads everything before it sends anything) cannot
    loop on them, and the command always ends. Records that arrive between the end-offset request and
    the first fetch may be included; they were written before anything was replayed.
    """
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    if not partitions:
        return
    consumer.assign(partitions)
    starts = consumer.beginning_offsets(partitions, timeout_ms=timeout_ms)
    targets: dict[TopicPartition, int] = consumer.end_offsets(partitions, timeout_ms=timeout_ms)
    # tansu's end offset is at least the last batch's base offset + 1, so end <= start means empty
    pending = {tp for tp in partitions if targets[tp] > starts[tp]}
    unfixed = set(pending)  # partitions whose first fetch response has not been seen yet
    for tp in partitions:
        consumer.seek(tp, starts[tp])
    last_progress = time.monotonic()
    while pending:
        batches = consumer.poll(timeout_ms=min(500, timeout_ms))
        for tp in list(unfixed):
            high = consumer.highwater(tp)
            if high is not None:
                targets[tp] = max(targets[tp], int(high))
                unfixed.discard(tp)
        for tp, records in batches.items():
            for record in records:
                if record.offset < targets[tp]:
                    yield DeadLetter.from_record(record)
            last_progress = time.monotonic()
        for tp in list(pending - unfixed):
            if consumer.position(tp, timeout_ms=timeout_ms) >= targets[tp]:
                pending.discard(tp)
                consumer.pause(tp)
        if pending and time.monotonic() - last_progress > timeout_ms / 1000:
            raise KafkaUnavailable(f"no progress reading {topic} for {timeout_ms / 1000:g} s")


class Replayer:
    """An idempotent producer (acks=all) that re-publishes records and waits for every one."""

    def __init__(self, conn: KafkaConnection, timeout_s: float) -> None:
        timeout_ms = max(1_000, int(timeout_s * 1000))
        self._timeout_s = timeout_s
        try:
            self._producer = KafkaProducer(
                acks="all",
                enable_idempotence=True,
                max_block_ms=timeout_ms,
                linger_ms=5,
                **_client_options(conn, timeout_s),
            )
        except KafkaError as exc:
            raise KafkaUnavailable(f"cannot reach Kafka at {conn.bootstrap_servers}: {exc}") from exc

    def send_all(
        self, topic: str, records: Sequence[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]
    ) -> None:
        """Send (key, value, headers) records to ``topic``; :class:`KafkaUnavailable` unless all land."""
        try:
            futures = [self._producer.send(topic, key=k, value=v, headers=h) for k, v, h in records]
            self._producer.flush(timeout=self._timeout_s)
            for future in futures:
                future.get(timeout=self._timeout_s)
        except KafkaError as exc:
            raise KafkaUnavailable(f"publishing to {topic} failed: {exc}") from exc

    def close(self) -> None:
        self._producer.close(timeout=self._timeout_s)


__all__ = ["KafkaConnection", "KafkaUnavailable", "Replayer", "read_topic"]

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
    """Every record of ``topic`` from the beginning to the end it has now (none if it does not exist).

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
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    if not partitions:
        return
    consumer.assign(partitions)
    starts = consumer.beginning_offsets(partitions, timeout_ms=timeout_ms)
    ends = consumer.end_offsets(partitions, timeout_ms=timeout_ms)
    pending = {tp for tp in partitions if ends[tp] > starts[tp]}
    for tp in partitions:
        consumer.seek(tp, starts[tp])
    last_progress = time.monotonic()
    while pending:
        batches = consumer.poll(timeout_ms=min(500, timeout_ms))
        for tp, records in batches.items():
            for record in records:
                if record.offset < ends[tp]:
                    yield DeadLetter.from_record(record)
            last_progress = time.monotonic()
        for tp in list(pending):
            if consumer.position(tp, timeout_ms=timeout_ms) >= ends[tp]:
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

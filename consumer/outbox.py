"""The consumer's one Kafka producer, for ledger records and dead letters, with durable flushes.

:meth:`Outbox.flush` returns only when every record sent since the last flush is acknowledged by
all in-sync replicas; if any failed after the producer's own retries, it raises
:class:`OutboxError` and the consumer stops without committing (a restart redoes the batch).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError, MessageSizeTooLargeError

MAX_REQUEST_BYTES = 64 * 1024 * 1024
"""Client-side cap of one produce request: above any record the consumer can have read."""

log = logging.getLogger(__name__)


class OutboxError(RuntimeError):
    """Kafka did not acknowledge a ledger record or dead letter."""


@dataclass(frozen=True, slots=True)
class OutRecord:
    """One record to produce."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None
    headers: Sequence[tuple[str, bytes]] = ()
    timestamp_ms: int | None = None


class Outbox:
    """Sends records and remembers their futures until :meth:`flush`."""

    def __init__(self, producer: Any) -> None:
        self._producer = producer
        self._futures: list[tuple[Any, OutRecord | None]] = []

    @classmethod
    def connect(cls, bootstrap_servers: str, client_id: str, **security: object) -> Outbox:
        """An idempotent, ``acks=all`` producer for the given brokers."""
        producer = KafkaProducer(
            bootstrap_servers=bootstrap_servers.split(","),
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_request_size=MAX_REQUEST_BYTES,
            **security,
        )
        return cls(producer)

    def send(self, record: OutRecord, *, if_too_large: OutRecord | None = None) -> None:
        """Queue one record (durable only after :meth:`flush`).

        ``if_too_large`` is sent instead when Kafka refuses ``record`` for its size.
        """
        try:
            future = self._send(record)
        except MessageSizeTooLargeError:
            if if_too_large is None:
                raise
            future, if_too_large = self._send(if_too_large), None
        self._futures.append((future, if_too_large))

    def _send(self, record: OutRecord) -> Any:
        return self._producer.send(
            record.topic,
            key=record.key,
            value=record.value,
            partition=record.partition,
            headers=list(record.headers),
            timestamp_ms=record.timestamp_ms,
        )

    @property
    def unflushed(self) -> int:
        """Records sent since the last flush."""
        return len(self._futures)

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait for every queued record; raise :class:`OutboxError` if any was not written."""
        while self._futures:
            futures, self._futures = self._futures, []
            try:
                self._producer.flush(timeout=timeout_s)
            except KafkaError as exc:
                raise OutboxError(f"Kafka did not take the records in time: {exc}") from exc
            failed: list[Any] = []
            for future, fallback in futures:
                if future.succeeded():
                    continue
                if fallback is not None and isinstance(future.exception, MessageSizeTooLargeError):
                    self._futures.append((self._send(fallback), None))
                else:
                    failed.append(future)
            if failed:
                first = failed[0].exception if failed[0].is_done else "not acknowledged"
                raise OutboxError(
                    f"{len(failed)} of {len(futures)} records were not written to Kafka: {first}"
                )

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush what is queued and close the producer."""
        try:
            self._producer.close(timeout=timeout_s)
        except KafkaError:
            log.warning("producer did not close cleanly", exc_info=True)


__all__ = ["MAX_REQUEST_BYTES", "OutRecord", "Outbox", "OutboxError"]

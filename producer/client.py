"""Helpers around kafka-python's ``KafkaProducer``: reachability, error kinds, a close that cannot fail."""

from __future__ import annotations

import functools
import importlib.util
import logging
import socket
from collections.abc import Mapping
from typing import Any

from kafka import KafkaProducer
from kafka.errors import (
    AuthorizationError,
    CorruptRecordError,
    InvalidRecordError,
    InvalidTimestampError,
    InvalidTopicError,
    MessageSizeTooLargeError,
    PolicyViolationError,
    RecordListTooLargeError,
    UnsupportedForMessageFormatError,
)

logger = logging.getLogger(__name__)

PROBE_TIMEOUT = 1.0
"""Seconds a TCP connection to a bootstrap server may take in :func:`bootstrap_answers`."""
ABORT_JOIN_TIMEOUT = 2.0
"""Seconds :func:`close_producer` waits for the client's I/O thread to abort what it holds."""

PERMANENT_ERRORS: tuple[type[Exception], ...] = (
    AuthorizationError,
    CorruptRecordError,
    InvalidRecordError,
    InvalidTimestampError,
    InvalidTopicError,
    MessageSizeTooLargeError,
    PolicyViolationError,
    RecordListTooLargeError,
    UnsupportedForMessageFormatError,
)
"""Errors about the record or the account itself: sending it again cannot help."""


def bootstrap_answers(settings: Mapping[str, Any]) -> bool:
    """Whether a bootstrap server accepts a TCP connection.

    Cheap next to building a ``KafkaProducer`` (which holds the GIL for milliseconds, then fails after
    ``bootstrap_timeout_ms``), so an unreachable broker costs the app next to nothing while the
    sender retries. Through a proxy the answer is unknown: then the producer is simply built.
    """
    if settings.get("proxy_url") or settings.get("socks5_proxy"):
        return True
    servers = settings.get("bootstrap_servers") or []
    for server in [servers] if isinstance(servers, str) else servers:
        host, _, port = str(server).rpartition(":")
        if not host:
            host, port = port, ""
        try:
            with socket.create_connection((host.strip("[]"), int(port or 9092)), timeout=PROBE_TIMEOUT):
                return True
        except (OSError, ValueError):
            continue
    return False


@functools.cache
def hint_native_crc32c() -> None:
    """Say once (at INFO) when kafka-python has to checksum record batches in pure Python."""
    if importlib.util.find_spec("crc32c") is None:
        logger.info(
            "Label Studio ingest: install the 'crc32c' package; kafka-python's pure-Python checksum of "
            "every record batch holds the GIL for milliseconds, which the app's threads then wait for"
        )


def close_producer(producer: KafkaProducer, timeout: float | None, *, abort: bool) -> None:
    """Close a producer without raising; ``abort`` first fails the records it still holds.

    kafka-python 3.0's ``close(timeout)`` re-raises the timeout of its own flush when records are
    still undelivered, and then never stops its sender thread (its exit hook and ``__del__`` then
    fail the same way). So records that cannot be delivered any more are aborted first, through the
    sender's ``force_close`` (their errbacks fire with ``IllegalStateError``).
    """
    if abort:
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            try:
                sender.force_close()
                sender.join(ABORT_JOIN_TIMEOUT)
            except Exception:
                logger.debug("aborting the producer's pending records", exc_info=True)
    try:
        producer.close(timeout=timeout)
    except Exception:
        logger.debug("closing the producer", exc_info=True)

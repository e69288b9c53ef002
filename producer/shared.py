"""One transport per producer configuration, shared by every handler of the process.

Kafka's advice is one producer per process; handlers made with the same settings (or the same
``producer=``) share its buffer, sender (process or thread) and connections. The last handler to
close closes it.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from labelstudio_ingest.producer.process_transport import SenderProcessTransport
from labelstudio_ingest.producer.transport import (
    DEFAULT_EXIT_TIMEOUT,
    DEFAULT_MAX_BUFFERED_BYTES,
    DEFAULT_MAX_BUFFERED_EVENTS,
    Delivery,
    Transport,
)

if TYPE_CHECKING:
    from kafka import KafkaProducer

_SHARED: dict[Hashable, tuple[Delivery, int]] = {}
_SHARED_LOCK = threading.Lock()


def acquire_transport(
    *,
    settings: Mapping[str, Any] | None = None,
    producer: KafkaProducer | None = None,
    max_buffered_events: int = DEFAULT_MAX_BUFFERED_EVENTS,
    max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES,
    exit_timeout: float = DEFAULT_EXIT_TIMEOUT,
    sender: Literal["process", "thread"] = "thread",
) -> Delivery:
    """The process's transport for this producer (configuration), created on first use.

    ``sender="process"`` delivers through a sender process (settings only, see
    ``process_transport.py``), ``"thread"`` through a sender thread of this process.

    Pair every call with :func:`release_transport`.
    """
    target: Hashable = (
        ("producer", id(producer))
        if producer is not None
        else tuple(sorted((k, repr(v)) for k, v in (settings or {}).items()))
    )
    key = (target, max_buffered_events, max_buffered_bytes, sender)
    with _SHARED_LOCK:
        transport, users = _SHARED.get(key, (None, 0))
        if transport is None or transport.closed:
            if sender == "process" and settings is not None:
                transport = SenderProcessTransport(
                    settings=settings,
                    max_buffered_events=max_buffered_events,
                    max_buffered_bytes=max_buffered_bytes,
                    exit_timeout=exit_timeout,
                )
            else:
                transport = Transport(
                    settings=settings,
                    producer=producer,
                    max_buffered_events=max_buffered_events,
                    max_buffered_bytes=max_buffered_bytes,
                    exit_timeout=exit_timeout,
                )
            users = 0
        _SHARED[key] = (transport, users + 1)
        return transport


def release_transport(transport: Delivery, timeout: float | None = None) -> bool:
    """Give a transport back: the last user closes it, others only flush. Returns whether all was sent."""
    last = False
    with _SHARED_LOCK:
        for key, (shared, users) in list(_SHARED.items()):
            if shared is transport:
                if users <= 1:
                    del _SHARED[key]
                    last = True
                else:
                    _SHARED[key] = (shared, users - 1)
                break
        else:
            last = True
    return transport.close(timeout) if last else transport.flush(timeout)

"""Delivery of encoded events to Kafka without ever blocking or failing the caller.

The caller's thread only appends a :class:`Record` to a bounded in-memory buffer. A background sender
thread owns the ``KafkaProducer``: it builds it (retrying while no broker answers, since kafka-python
raises "Unable to bootstrap" at construction), hands records over (``send`` may block up to
``max_block_ms`` while metadata is missing) and takes back what could not be delivered yet, retrying
with capped exponential backoff until the broker acknowledges it. Beyond the buffer's bounds new
events are dropped and counted.

A producer the client gave up on (e.g. a broker that lost its idempotent-producer state) is closed and
built anew; an event the broker refuses for good (too large, not authorised, ...) is counted as failed.
Pending events are flushed at interpreter exit (see ``shared.py`` for one transport per producer).
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from labelstudio_ingest.producer.logs import RateLimitedLog
from labelstudio_ingest.producer.metrics import Counters, DropReason, ProducerStats

# kafka-python (through producer/client.py) is imported by the sender thread when it first runs, so a
# module that only needs Record or the defaults, such as the sender process's transport, never loads it.
if TYPE_CHECKING:
    from kafka import KafkaProducer

logger = logging.getLogger(__name__)

DEFAULT_MAX_BUFFERED_EVENTS = 10_000
DEFAULT_MAX_BUFFERED_BYTES = 64 * 1024 * 1024
DEFAULT_EXIT_TIMEOUT = 5.0
DEFAULT_FLUSH_TIMEOUT = 5.0
"""Seconds ``flush()`` and ``close()`` wait by default: a shutdown never hangs on an absent broker."""
RETRY_BACKOFF_INITIAL = 0.1
RETRY_BACKOFF_MAX = 5.0
_SHUTDOWN_GRACE = 3.0
"""Seconds past a close deadline to wait for the sender thread: ``client.ABORT_JOIN_TIMEOUT`` and 1 s."""
_FLUSH_POLL = 0.05
_MAX_DRAIN = 10_000
_MAX_IN_FLIGHT = 2_000
_BACKLOG_PER_EXTRA_SEND = 250
_WINDOW_POLL = 0.5
_CLIENT_FLUSH_WAIT = 0.25


@dataclass(slots=True, eq=False)
class Record:
    """One encoded event on its way to a topic."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    attempts: int = 0
    retry_at: float = 0.0

    @property
    def size(self) -> int:
        """Bytes the record holds in the buffer."""
        return len(self.key) + len(self.value)


class Delivery(Protocol):
    """What a handler needs of a transport: :class:`Transport` (a sender thread in this process) or
    :class:`~labelstudio_ingest.producer.process_transport.SenderProcessTransport`."""

    @property
    def counters(self) -> Counters:
        """The transport's counters (the handler counts its own drops there)."""
        ...

    @property
    def exit_timeout(self) -> float:
        """Seconds the flush at interpreter exit may take."""
        ...

    def submit(self, record: Record) -> bool:
        """Queue a record; never blocks on the network, never raises. False when it was dropped."""
        ...

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event so far has an outcome. False on timeout."""
        ...

    def close(self, timeout: float | None = None) -> bool:
        """Flush for up to ``timeout`` seconds, then stop. Whether everything was delivered."""
        ...

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        ...

    def stats(self, topic: str | None = None) -> ProducerStats:
        """The counters of one topic, or of all."""
        ...

    def _after_fork_in_child(self) -> None: ...


class Transport:
    """A bounded buffer drained into Kafka by one background thread (started on first use).

    Give either ``settings`` (kafka-python producer configuration; the transport builds and owns the
    producer) or ``producer`` (an existing ``KafkaProducer`` that stays the caller's to close).

    App threads only put records into a ``queue.SimpleQueue`` and count under a lock no background
    thread takes: under the GIL, waiting for a lock a background thread holds can cost an app thread
    a whole switch interval (5 ms), far more than the rest of its work.
    """

    def __init__(
        self,
        *,
        settings: Mapping[str, Any] | None = None,
        producer: KafkaProducer | None = None,
        max_buffered_events: int = DEFAULT_MAX_BUFFERED_EVENTS,
        max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES,
        exit_timeout: float = DEFAULT_EXIT_TIMEOUT,
    ) -> None:
        if (settings is None) == (producer is None):
            raise ValueError("give either producer settings or an existing producer")
        if max_buffered_events < 1 or max_buffered_bytes < 1:
            raise ValueError("the buffer bounds must be positive")
        self._settings = dict(settings) if settings is not None else None
        self._producer: KafkaProducer | None = producer
        self._owns_producer = producer is None
        self.max_buffered_events = max_buffered_events
        self.max_buffered_bytes = max_buffered_bytes
        self.exit_timeout = exit_timeout
        self._log = RateLimitedLog(logger)
        self._init_state()
        register_transport(self)

    def _init_state(self) -> None:
        self.counters = Counters()
        # app threads: the inbox and what they put in it
        self._inbox: queue.SimpleQueue[Record | None] = queue.SimpleQueue()
        self._app_lock = threading.Lock()
        self._submitted = 0
        self._submitted_bytes = 0
        self._closing = False
        self._thread: threading.Thread | None = None
        # background threads: what came out of the buffer, one way or another
        self._done_lock = threading.Lock()
        self._done = threading.Condition(self._done_lock)
        self._finished = 0
        self._finished_bytes = 0
        # the sender thread alone
        self._waiting: deque[Record] = deque()
        self._in_flight = 0  # handed to kafka-python, not yet acknowledged or handed back
        self._flush_requested = False
        self._generation = 0
        self._broken = False
        self._stopping = False
        self._close_deadline: float | None = None

    # -- the app's side -----------------------------------------------------------------------------

    def submit(self, record: Record) -> bool:
        """Queue a record for delivery; never blocks on the network, never raises.

        Returns False when the record was dropped (closed, or the buffer is at its bound).
        """
        size = record.size
        with self._app_lock:
            if self._closing:
                reason = DropReason.CLOSED
            elif (
                self._submitted - self._finished >= self.max_buffered_events
                or self._submitted_bytes - self._finished_bytes + size > self.max_buffered_bytes
            ):
                reason = DropReason.BUFFER_FULL
            else:
                self._submitted += 1
                self._submitted_bytes += size
                self.counters.submitted(record.topic)
                self._inbox.put(record)
                if self._thread is None:
                    self._start_sender()
                return True
        reject(self.counters, self._log, record, reason, waiting=self._submitted - self._finished)
        return False

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event buffered so far is delivered, refused or dropped. False on timeout."""
        target = self._submitted
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._finished < target and self._thread is not None:
            self._flush_requested = True  # the sender makes the client send without its linger
            self._inbox.put(None)
        with self._done:
            while self._finished < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._done.wait(_FLUSH_POLL if remaining is None else min(remaining, _FLUSH_POLL))
            return True

    def close(self, timeout: float | None = None) -> bool:
        """Flush for up to ``timeout`` seconds, then stop; what is still undelivered is dropped.

        Returns whether everything was delivered. Closing twice is harmless.
        """
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        with self._app_lock:
            self._closing = True
            thread = self._thread
        delivered = self.flush(timeout)
        self._close_deadline = deadline
        self._stopping = True
        self._inbox.put(None)  # wakes the sender, which drops what is left and closes the producer
        if thread is not None and thread is not threading.current_thread():
            # aborting what the client still holds takes a moment past the deadline
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            thread.join(None if remaining is None else remaining + _SHUTDOWN_GRACE)
        return delivered

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closing

    def stats(self, topic: str | None = None) -> ProducerStats:
        """The counters of one topic, or of every topic this transport sent to."""
        return self.counters.snapshot(topic)

    # -- the sender thread --------------------------------------------------------------------------

    def _start_sender(self) -> None:
        flush_at_child_exit()
        self._thread = threading.Thread(target=self._run, name="labelstudio-ingest-sender", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stopping:
                self._take_inbox()
                sent = 0
                while self._waiting and self._waiting[0].retry_at <= time.monotonic() and not self._stopping:
                    if self._in_flight >= _MAX_IN_FLIGHT:
                        self._wait_for_window()
                        continue
                    self._send(self._waiting.popleft())
                    sent += 1
                    # Hand the GIL to a waiting app thread after every few records: a long burst of
                    # sends (tens of microseconds each in kafka-python) would stall it. Only a growing
                    # backlog, which would end in dropped events, earns the sender longer turns.
                    if sent >= 1 + len(self._waiting) // _BACKLOG_PER_EXTRA_SEND:
                        sent = 0
                        time.sleep(0)
                if self._flush_requested:
                    self._flush_client()
        except BaseException:  # pragma: no cover - a bug; keep the app alive and say so
            logger.exception("Label Studio ingest: the Kafka sender thread stopped")
        finally:
            self._drop_leftovers()
            self._shutdown_producer()

    def _take_inbox(self) -> None:
        """Move what the app (or a failed delivery) put in the inbox to the sender's own queue."""
        timeout = None
        if self._waiting:
            timeout = max(self._waiting[0].retry_at - time.monotonic(), 0.0)
        try:
            record = self._inbox.get(timeout=timeout)
        except queue.Empty:
            return
        # everything available at once: one wake-up per burst, not one per record
        for _ in range(_MAX_DRAIN):
            if record is not None:
                if record.retry_at:
                    self._waiting.appendleft(record)
                else:
                    self._waiting.append(record)
            try:
                record = self._inbox.get_nowait()
            except queue.Empty:
                return

    def _drop_leftovers(self) -> None:
        leftovers = list(self._waiting)
        self._waiting.clear()
        while True:
            try:
                record = self._inbox.get_nowait()
            except queue.Empty:
                break
            if record is not None:
                leftovers.append(record)
        for record in leftovers:
            self._finish(record, DropReason.CLOSED)
        if leftovers:
            logger.warning(
                "Label Studio ingest: closed with %d events not delivered to Kafka", len(leftovers)
            )

    def _send(self, record: Record) -> None:
        producer, generation = self._current_producer()
        if producer is None:
            self._retry(record)
            return
        try:
            future = producer.send(record.topic, value=record.value, key=record.key, headers=record.headers)
        except Exception as exc:
            from kafka.errors import KafkaError  # noqa: PLC0415 (loaded by now: the producer exists)

            if isinstance(exc, KafkaError):
                self._on_error(record, generation, exc)
            else:  # a record kafka-python refuses outright can never be sent
                self._fail(record, exc)
            return
        with self._done:
            self._in_flight += 1
        future.add_callback(self._on_delivered, record)
        future.add_errback(self._on_handed_back, record, generation)

    def _flush_client(self) -> None:
        """Have kafka-python send what it holds now rather than after ``linger_ms``."""
        self._flush_requested = False
        if self._producer is None or self._in_flight == 0:
            return
        try:
            self._producer.flush(timeout=_CLIENT_FLUSH_WAIT)
        except Exception:  # still in flight after the wait: acknowledged (or not) later
            logger.debug("client flush did not complete", exc_info=True)

    def _wait_for_window(self) -> None:
        """Wait until the client holds fewer than ``_MAX_IN_FLIGHT`` records (or the transport stops).

        The window keeps a long outage cheap: only that many records sit in kafka-python (and expire
        there, to be sent again), the rest wait in the buffer without costing anything.
        """
        with self._done:
            self._done.wait_for(lambda: self._in_flight < _MAX_IN_FLIGHT or self._stopping, _WINDOW_POLL)

    def _current_producer(self) -> tuple[KafkaProducer | None, int]:
        if self._producer is not None and (not self._broken or not self._owns_producer):
            return self._producer, self._generation
        from kafka import KafkaProducer  # noqa: PLC0415 (see the imports at the top)

        from labelstudio_ingest.producer.client import (  # noqa: PLC0415
            bootstrap_answers,
            close_producer,
            hint_native_crc32c,
        )

        if self._producer is not None:  # ours, and the client gave up on it: start afresh
            old, self._producer = self._producer, None
            close_producer(old, 0.0, abort=True)  # what it still held comes back for a retry
        assert self._settings is not None
        hint_native_crc32c()
        if not bootstrap_answers(self._settings):
            self.counters.connection_error()
            self._log.warning(
                "connect",
                "Label Studio ingest: no Kafka broker answers at %s; events wait in the buffer",
                self._settings.get("bootstrap_servers"),
            )
            return None, self._generation
        try:
            producer = KafkaProducer(**self._settings)
        except Exception as exc:
            self.counters.connection_error()
            self._log.warning(
                "connect",
                "Label Studio ingest: cannot connect to Kafka at %s %s(%s); events wait in the buffer",
                self._settings.get("bootstrap_servers"),
                _security_summary(self._settings),
                exc,
            )
            return None, self._generation
        _move_exit_hook_last()  # kafka-python's own exit hook must not close it before we flush
        self._producer = producer
        self._generation += 1
        self._broken = False
        return producer, self._generation

    def _shutdown_producer(self) -> None:
        producer = self._producer if self._owns_producer else None
        self._producer = None
        if producer is not None:
            from labelstudio_ingest.producer.client import close_producer  # noqa: PLC0415

            deadline = self._close_deadline
            timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            close_producer(producer, timeout, abort=self._finished < self._submitted)

    # -- delivery outcomes (kafka-python's I/O thread, or the sender thread) ------------------------

    def _on_delivered(self, record: Record, _metadata: object) -> None:
        self._finish(record, "published", landed=True)

    def _on_handed_back(self, record: Record, generation: int, exc: BaseException) -> None:
        with self._done:
            self._in_flight -= 1
            if self._in_flight == _MAX_IN_FLIGHT - 1:
                self._done.notify_all()
        self._on_error(record, generation, exc)

    def _on_error(self, record: Record, generation: int, exc: BaseException) -> None:
        from labelstudio_ingest.producer.client import PERMANENT_ERRORS  # noqa: PLC0415

        if isinstance(exc, PERMANENT_ERRORS):
            self._fail(record, exc)
            return
        if not getattr(exc, "retriable", False) and generation == self._generation:
            self._broken = True
        self._retry(record, exc)

    def _retry(self, record: Record, exc: BaseException | None = None) -> None:
        if self._stopping:
            self._finish(record, DropReason.CLOSED)
            return
        record.attempts += 1
        backoff = min(RETRY_BACKOFF_INITIAL * 2 ** (record.attempts - 1), RETRY_BACKOFF_MAX)
        record.retry_at = time.monotonic() + backoff
        if threading.current_thread() is self._thread:
            self._waiting.appendleft(record)
        else:
            self._inbox.put(record)
        if exc is not None:
            self._log.warning(
                "retry",
                "Label Studio ingest: Kafka did not take an event yet (%s); it stays buffered and is retried",
                exc,
            )

    def _fail(self, record: Record, exc: BaseException) -> None:
        self._log.warning(
            f"failed:{type(exc).__name__}",
            "Label Studio ingest: Kafka refused an event for good (%s); it is counted as failed",
            exc,
        )
        self._finish(record, "failed")

    def _finish(self, record: Record, outcome: str | DropReason, *, landed: bool = False) -> None:
        if outcome == "published":
            self.counters.published(record.topic)
        elif outcome == "failed":
            self.counters.failed(record.topic)
        else:
            self.counters.discarded(record.topic, DropReason(outcome))
        with self._done:
            self._finished += 1
            self._finished_bytes += record.size
            if landed:
                self._in_flight -= 1
            if self._finished >= self._submitted or (landed and self._in_flight == _MAX_IN_FLIGHT - 1):
                self._done.notify_all()

    def _after_fork_in_child(self) -> None:
        """The child of a fork has no sender thread: start over with an empty buffer."""
        self._init_state()
        if self._owns_producer:
            inherited, self._producer = self._producer, None
            if inherited is not None:
                _disown(inherited)


def reject(
    counters: Counters, warnings: RateLimitedLog, record: Record, reason: DropReason, *, waiting: int
) -> None:
    """Count a record a transport would not take, and say why (rate-limited)."""
    counters.rejected(record.topic, reason)
    if reason is DropReason.BUFFER_FULL:
        warnings.warning(
            "buffer_full",
            "Label Studio ingest: %d events wait for Kafka, the buffer's bound; "
            "dropping new events until the broker takes them",
            waiting,
        )
    else:
        warnings.warning("closed", "Label Studio ingest: the handler is closed; dropping an event")


def _disown(producer: KafkaProducer) -> None:
    """Make a producer inherited through ``fork()`` close as a no-op in the child.

    Its I/O thread did not survive the fork, so kafka-python's ``close`` (from ``__del__`` or its exit
    hook) would wait a second for records that only the parent can send, then print a
    ``KafkaTimeoutError`` -- in every child forked while events were in flight, before it could even
    exec. The parent still owns the producer and closes it; the child only drops its copy.
    """
    try:
        producer._unregister_cleanup()
        producer._closed = True
    except Exception:  # a kafka-python without these internals: the old behaviour, slow but harmless
        logger.debug("could not disown the producer inherited through fork", exc_info=True)


def _security_summary(settings: Mapping[str, Any]) -> str:
    """How the producer connects, for messages: protocol, SASL mechanism and user (never a password)."""
    protocol = str(settings.get("security_protocol", "PLAINTEXT"))
    if protocol == "PLAINTEXT":
        return ""
    parts = [f"security_protocol={protocol}"]
    if protocol.startswith("SASL_"):
        parts.append(f"sasl_mechanism={settings.get('sasl_mechanism')}")
        if settings.get("sasl_plain_username"):
            parts.append(f"user={settings.get('sasl_plain_username')}")
    if protocol.endswith("SSL") and settings.get("ssl_cafile"):
        parts.append(f"ssl_cafile={settings.get('ssl_cafile')}")
    return "with " + ", ".join(parts) + " "


_LIVE_TRANSPORTS: weakref.WeakSet[Delivery] = weakref.WeakSet()


def register_transport(transport: Delivery) -> None:
    """Flush and close ``transport`` at interpreter exit, and reset it in the child of a fork."""
    _LIVE_TRANSPORTS.add(transport)
    _move_exit_hook_last()


def _close_all_at_exit() -> None:
    for transport in list(_LIVE_TRANSPORTS):
        if not transport.closed:
            transport.close(transport.exit_timeout)


_EXIT_HOOKED_PID = 0


def flush_at_child_exit() -> None:
    """Close the transports also where a worker process ends with ``os._exit``, skipping ``atexit``:

    - a ``multiprocessing`` child runs ``multiprocessing.util``'s finalizers first;
    - a Celery prefork child (billiard) sends ``worker_process_shutdown`` first, also when it ends
      after ``max_tasks_per_child`` tasks.

    Called when a transport starts its work, once per process: a child clears the finalizers it
    inherited before it runs its target, so the hooks are set in the child itself, at its first event.
    Neither module is imported here. Closing twice (hook, then ``atexit``) is harmless.
    """
    global _EXIT_HOOKED_PID  # noqa: PLW0603
    if os.getpid() == _EXIT_HOOKED_PID:
        return
    _EXIT_HOOKED_PID = os.getpid()
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        util.Finalize(None, _close_all_at_exit, exitpriority=100)
    celery_signals = sys.modules.get("celery.signals")
    if celery_signals is not None:
        celery_signals.worker_process_shutdown.connect(_close_all_at_worker_shutdown, weak=False)


def _close_all_at_worker_shutdown(*_args: object, **_kwargs: object) -> None:
    _close_all_at_exit()


def _move_exit_hook_last() -> None:
    # atexit runs hooks last-registered-first; kafka-python registers one per producer that closes it,
    # so ours is re-registered after every producer is built, to flush while the producer still works.
    atexit.unregister(_close_all_at_exit)
    atexit.register(_close_all_at_exit)


def _after_fork_in_child() -> None:
    for transport in list(_LIVE_TRANSPORTS):
        transport._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)

"""Delivery through a sender process: the app's threads write encoded events to a socket, no more.

kafka-python is pure Python: its partitioner, record encoding, I/O thread and one completion callback
per record all run under the app's GIL. In an asyncio app, where the event loop hands the GIL over
at every iteration, that work interleaves with the app's own calls and shows in their latency
(docs/PERFORMANCE.md). This transport moves all of it to a child process
(``labelstudio_ingest.producer.sender_process``) that runs the ordinary :class:`Transport` there.

What stays in the app:

- the caller's thread: one non-blocking ``os.write`` of a length-prefixed ``marshal`` frame;
- a *link* thread, asleep in ``select`` nearly always: it starts the sender process (again, if it
  died), writes what did not fit into the socket (a burst before the sender is up, a starved sender),
  and reads the sender's reports: counters (at most 4 times a second while they change) and log
  records, which it logs under the same logger names.

Counters stay exact: an event counts as buffered from the app's ``submit`` until the sender reports
it published, failed or dropped. When the sender process dies (killed, out of memory), the events it
held -- written to it, never reported -- are counted as dropped (``sender_exited``), and a new sender
starts with what still waits in the app.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Mapping
from typing import Any

from labelstudio_ingest.producer.logs import RateLimitedLog
from labelstudio_ingest.producer.metrics import Counters, DropReason, ProducerStats, TopicCounts
from labelstudio_ingest.producer.pipe import FrameReader, frame, plain_data
from labelstudio_ingest.producer.sender_process import FORWARDED_LOGGERS
from labelstudio_ingest.producer.settings import SETTINGS_NOT_PLAIN
from labelstudio_ingest.producer.transport import (
    DEFAULT_EXIT_TIMEOUT,
    DEFAULT_MAX_BUFFERED_BYTES,
    DEFAULT_MAX_BUFFERED_EVENTS,
    Record,
    flush_at_child_exit,
    register_transport,
    reject,
)

logger = logging.getLogger(__name__)

SENDER_MODULE = "labelstudio_ingest.producer.sender_process"
BOOTSTRAP = f"""\
import marshal, os, struct, sys
def take(fd, size):
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            sys.exit(2)
        data += chunk
    return data
fd = int(sys.argv[1])
sys.path[:] = marshal.loads(take(fd, struct.unpack("<I", take(fd, 4))[0]))
from {SENDER_MODULE} import main
sys.exit(main(sys.argv[1:]))
"""
"""What ``python -I -c`` runs in the sender: the app's ``sys.path`` arrives first on the socket.

``-I`` (isolated mode) ignores ``PYTHONPATH`` and every other ``PYTHON*`` variable, the user's site
directory and the working directory, so an APM agent that loads through a ``sitecustomize`` on
``PYTHONPATH`` (ddtrace-run, opentelemetry-instrument, newrelic-admin) is not loaded into the sender.
The app's import path, sent explicitly, still lets it import this package as the app does."""
RESTART_BACKOFF_INITIAL = 0.5
RESTART_BACKOFF_MAX = 30.0
_LINK_POLL = 1.0
_FLUSH_POLL = 0.5
_REAP_TIMEOUT = 5.0
_SHUTDOWN_GRACE = 4.0
"""Seconds past a close deadline to wait for the sender: its ``client.ABORT_JOIN_TIMEOUT`` and 2 s."""
SEND_BUFFER = 1 << 20
"""Bytes asked for the socket's send buffer: a burst of events fits without waiting for the sender."""


class SenderCounters(Counters):
    """App-side counts kept here; delivery outcomes as the sender process(es) reported them.

    Outcomes of senders that exited are kept (``retired``) and added to the live sender's latest report.
    """

    def __init__(self) -> None:
        super().__init__()
        self._retired: dict[str, TopicCounts] = {}
        self._retired_connection_errors = 0
        self._current: dict[str, TopicCounts] = {}
        self._current_connection_errors = 0
        self.finished = 0
        """Events with an outcome (published, failed, dropped after submit), all topics together."""

    def report(
        self, tables: Mapping[str, tuple[int, int, Mapping[str, int]]], connection_errors: int
    ) -> None:
        """The live sender's counters (cumulative since it started)."""
        with self._background_lock:
            self._current = {
                topic: TopicCounts(published=published, failed=failed, discarded=Counter(dropped))
                for topic, (published, failed, dropped) in tables.items()
            }
            self._current_connection_errors = connection_errors
            self._rebuild()

    def outcomes(self, topic: str) -> int:
        """Events of ``topic`` the live sender reported an outcome for."""
        counts = self._current.get(topic)
        return 0 if counts is None else counts.published + counts.failed + sum(counts.discarded.values())

    def retire(self, lost: Mapping[str, int], reason: DropReason) -> None:
        """The live sender exited: keep its outcomes, and count what it held as dropped."""
        with self._background_lock:
            for topic, counts in self._current.items():
                kept = self._for(self._retired, topic)
                kept.published += counts.published
                kept.failed += counts.failed
                kept.discarded.update(counts.discarded)
            for topic, count in lost.items():
                if count > 0:
                    self._for(self._retired, topic).discarded[reason.value] += count
            self._retired_connection_errors += self._current_connection_errors
            self._current = {}
            self._current_connection_errors = 0
            self._rebuild()

    def _rebuild(self) -> None:
        merged: dict[str, TopicCounts] = {}
        for table in (self._retired, self._current):
            for topic, counts in table.items():
                into = self._for(merged, topic)
                into.published += counts.published
                into.failed += counts.failed
                into.discarded.update(counts.discarded)
        self._background = merged
        self._connection_errors = self._retired_connection_errors + self._current_connection_errors
        self.finished = sum(c.published + c.failed + sum(c.discarded.values()) for c in merged.values())


class SenderProcessTransport:
    """The :class:`~labelstudio_ingest.producer.transport.Transport` interface, delivered by a child
    process that owns the ``KafkaProducer``.

    ``settings`` must be plain data (strings, numbers, lists, dicts): they are sent to the child.
    The buffer bounds apply to events not yet delivered, wherever they wait.
    """

    def __init__(
        self,
        *,
        settings: Mapping[str, Any],
        max_buffered_events: int = DEFAULT_MAX_BUFFERED_EVENTS,
        max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES,
        exit_timeout: float = DEFAULT_EXIT_TIMEOUT,
        python: str | None = None,
    ) -> None:
        if max_buffered_events < 1 or max_buffered_bytes < 1:
            raise ValueError("the buffer bounds must be positive")
        if not plain_data(dict(settings)):
            raise ValueError(f"{SETTINGS_NOT_PLAIN}; use sender='thread'")
        self._init_args = (dict(settings), max_buffered_events, max_buffered_bytes, exit_timeout)
        self.max_buffered_events = max_buffered_events
        self.max_buffered_bytes = max_buffered_bytes
        self.exit_timeout = exit_timeout
        self.python = python or sys.executable
        self._log = RateLimitedLog(logger)
        self._init_state()
        register_transport(self)

    def _init_state(self) -> None:
        self.counters = SenderCounters()
        self._lock = threading.Lock()  # the socket's sending side and the backlog
        self._changed = threading.Condition(threading.Lock())  # notified at every report
        self._sock: socket.socket | None = None  # the way to a sender that said it is ready
        self._backlog: deque[tuple[bytes, str | None, int]] = deque()  # frame, topic, event bytes
        self._backlog_bytes = 0
        self._partial: memoryview | None = None  # the rest of a frame the socket took only part of
        self._written: Counter[str] = Counter()  # events written to the live sender, per topic
        self._submitted = 0
        self._closing = False
        self._close_queued = False
        self._stopped = False
        self._generation = 0  # senders that said ready so far
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        # closed with the transport (never earlier: a late flush() may still write a wake-up to it)
        self._wake_closer = weakref.finalize(self, _close_quietly, self._wake_r, self._wake_w)
        # the link thread alone
        self._proc: subprocess.Popen[bytes] | None = None
        self._status_fd: int | None = None
        self._starting_sock: socket.socket | None = None
        self._reader = FrameReader()
        self._backoff = RESTART_BACKOFF_INITIAL

    # -- the app's side -----------------------------------------------------------------------------

    def submit(self, record: Record) -> bool:
        """Queue a record for delivery; never blocks on the network, never raises.

        Returns False when the record was dropped (closed, or the buffer is at its bound).
        """
        size = record.size
        data = frame(("r", record.topic, record.key, record.value, record.headers))
        with self._lock:
            if self._closing:
                reason = DropReason.CLOSED
            elif (
                self._submitted - self.counters.finished >= self.max_buffered_events
                or self._backlog_bytes + size > self.max_buffered_bytes
            ):
                reason = DropReason.BUFFER_FULL
            else:
                self._submitted += 1
                self.counters.submitted(record.topic)
                self._send_in_order(data, record.topic, size)
                return True
        reject(self.counters, self._log, record, reason, waiting=self._submitted - self.counters.finished)
        return False

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event buffered so far is delivered, refused or dropped. False on timeout."""
        target = self._submitted
        if self.counters.finished >= target:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        asked = -1
        with self._changed:
            while self.counters.finished < target:
                if asked != self._generation:  # ask every new sender too: it holds what was waiting
                    asked = self._generation
                    self._request(frame(("f",)))
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._changed.wait(_FLUSH_POLL if remaining is None else min(remaining, _FLUSH_POLL))
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Flush for up to ``timeout`` seconds, then stop the sender; what is undelivered is dropped.

        Returns whether everything was delivered. Closing twice is harmless.
        """
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        with self._lock:
            already, self._closing = self._closing, True
        delivered = self.flush(timeout)
        if already:
            return delivered
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        thread = self._thread
        if thread is None:
            self._stopped = True
            return delivered
        self._request(frame(("c", remaining)), closing=True)
        thread.join(None if remaining is None else remaining + _SHUTDOWN_GRACE)
        if thread.is_alive():  # a sender that does not stop in time is stopped
            proc = self._proc
            if proc is not None:
                proc.kill()
            thread.join(_SHUTDOWN_GRACE)
        return delivered

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closing

    def stats(self, topic: str | None = None) -> ProducerStats:
        """The counters of one topic, or of every topic this transport sent to."""
        return self.counters.snapshot(topic)

    @property
    def sender_pid(self) -> int | None:
        """The process id of the live sender process, if one runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    def _request(self, data: bytes, *, closing: bool = False) -> None:
        """Send a control message in order with the records before it."""
        with self._lock:
            if closing:
                self._close_queued = True
            self._send_in_order(data, None, 0)
        if closing:
            self._wake()  # the link thread closes the sender's input once all is sent

    def _send_in_order(self, data: bytes, topic: str | None, size: int) -> None:
        """Send what the socket takes now, or queue it behind what already waits (lock held)."""
        if self._thread is None:
            self._start_link()
        if self._sock is not None and not self._backlog and self._partial is None:
            written = self._write(data)
            if written:
                if topic is not None:
                    self._written[topic] += 1
                if written < len(data):
                    self._partial = memoryview(data)[written:]
                    self._wake()
                return
        self._backlog.append((data, topic, size))
        self._backlog_bytes += size
        self._wake()

    def _write(self, data: bytes | memoryview) -> int:
        """Send what the socket takes now, without waiting (0 when full, or when the sender is gone).

        ``MSG_NOSIGNAL``: a sender that died must not take the app with it by SIGPIPE, which an app
        may have set back to its default (Python ignores it, but not every program keeps it so).
        """
        assert self._sock is not None
        try:
            return self._sock.send(data, socket.MSG_NOSIGNAL)
        except OSError:  # full (BlockingIOError), or a dead sender: the link thread deals with it
            return 0

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # already awake: the wake pipe is full
            os.write(self._wake_w, b"\0")

    # -- the link thread ----------------------------------------------------------------------------

    def _start_link(self) -> None:
        flush_at_child_exit()
        self._thread = threading.Thread(target=self._run, name="labelstudio-ingest-link", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stopped:
                if self._proc is None:
                    if self._close_queued:  # closing, and no sender left to deliver: stop here
                        break
                    if not self._start_sender():
                        continue
                self._step()
        except BaseException:  # pragma: no cover - a bug; keep the app alive and say so
            logger.exception("Label Studio ingest: the link to the sender process stopped")
            self._stop_sender()
        finally:
            self._drop_backlog()
            with self._changed:
                self._changed.notify_all()

    def _step(self) -> None:
        """One turn: wait for a report, a wake-up or room in the socket, and deal with it."""
        assert self._status_fd is not None
        sock = self._sock
        waiting = [sock] if sock is not None and (self._backlog or self._partial is not None) else []
        readable, writable, _ = select.select([self._status_fd, self._wake_r], waiting, [], _LINK_POLL)
        if self._wake_r in readable:
            self._clear_wake()
        if self._status_fd in readable:
            try:
                data = os.read(self._status_fd, 1 << 20)
            except OSError:
                data = b""
            if not data:
                self._sender_exited()
                return
            for message in self._reader.feed(data):
                self._on_message(message)
        if writable:
            self._drain()
        self._maybe_finish_input()

    def _start_sender(self) -> bool:
        """Start a sender process; on failure wait (interruptibly) before the next attempt."""
        levels = {name: logging.getLogger(name).getEffectiveLevel() for name in FORWARDED_LOGGERS}
        # records go through a socket (sent with MSG_NOSIGNAL, see _write), reports through a pipe
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(OSError):  # room for bursts; the system caps it at net.core.wmem_max
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        status_r, status_w = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [self.python, "-I", "-c", BOOTSTRAP, str(theirs.fileno()), str(status_w)],
                pass_fds=(theirs.fileno(), status_w),
                stdin=subprocess.DEVNULL,
                env=_sender_environment(),
            )
        except OSError as exc:
            ours.close()
            os.close(status_r)
            self._log.warning(
                "spawn",
                "Label Studio ingest: cannot start the sender process (%s %s: %s); events wait in the "
                "buffer. Pass sender='thread' to send from a thread of this process instead",
                self.python,
                SENDER_MODULE,
                exc,
            )
            self._pause()
            return False
        finally:
            theirs.close()
            os.close(status_w)
        path = tuple(entry or os.getcwd() for entry in sys.path)  # '' is the app's working directory
        with contextlib.suppress(OSError):  # it died at once: its exit is dealt with like any other
            ours.sendall(frame(path) + frame(("init", *self._init_args, levels)), socket.MSG_NOSIGNAL)
        ours.setblocking(False)
        self._starting_sock = ours
        self._status_fd = status_r
        self._reader = FrameReader()
        return True

    def _on_message(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "stats":
            self.counters.report(message[1], message[2])
            with self._changed:
                self._changed.notify_all()
        elif kind == "log":
            _, level, name, text, (pathname, lineno, function, thread_name, created) = message
            target = logging.getLogger(name)
            if target.isEnabledFor(level):
                record = target.makeRecord(name, level, pathname, lineno, text, (), None, function)
                record.created, record.threadName = created, f"sender:{thread_name}"
                record.process = self.sender_pid
                target.handle(record)
        elif kind == "ready":
            with self._lock:
                self._sock, self._starting_sock = self._starting_sock, None
                self._written = Counter()
                self._generation += 1
            self._backoff = RESTART_BACKOFF_INITIAL
            with self._changed:
                self._changed.notify_all()

    def _drain(self) -> None:
        """Send what waits, in order, as far as the socket takes it now."""
        with self._lock:
            if self._sock is None:
                return
            while self._partial is not None or self._backlog:
                if self._partial is not None:
                    written = self._write(self._partial)
                    self._partial = self._partial[written:] if written < len(self._partial) else None
                    if self._partial is not None:
                        return
                    continue
                data, topic, size = self._backlog[0]
                written = self._write(data)
                if not written:
                    return
                self._backlog.popleft()
                self._backlog_bytes -= size
                if topic is not None:
                    self._written[topic] += 1
                if written < len(data):
                    self._partial = memoryview(data)[written:]

    def _maybe_finish_input(self) -> None:
        """After the close request went out, close the sender's input: it flushes and exits."""
        with self._lock:
            if not self._close_queued or self._sock is None or self._backlog or self._partial is not None:
                return
            sock, self._sock = self._sock, None
        sock.close()

    def _sender_exited(self) -> None:
        """The sender closed its reports: it exited. Account for what it held, and start anew."""
        proc, self._proc = self._proc, None
        assert proc is not None
        try:
            code = proc.wait(_REAP_TIMEOUT)
        except subprocess.TimeoutExpired:  # pragma: no cover - it closed its output but lives on
            proc.kill()
            code = proc.wait()
        with self._lock:
            for sock in (self._sock, self._starting_sock):
                if sock is not None:
                    sock.close()
            if self._status_fd is not None:
                os.close(self._status_fd)
            self._sock = self._starting_sock = None
            self._status_fd = None
            self._partial = None  # its frame was counted as written: it is part of what is lost
            lost = {topic: n - self.counters.outcomes(topic) for topic, n in self._written.items()}
            self._written = Counter()
            expected = self._close_queued and not self._backlog
        reason = DropReason.CLOSED if expected else DropReason.SENDER_EXITED
        self.counters.retire(lost, reason)
        with self._changed:
            self._changed.notify_all()
        held = sum(n for n in lost.values() if n > 0)
        if expected:
            self._stopped = True
            if held:
                logger.warning("Label Studio ingest: closed with %d events not delivered to Kafka", held)
            return
        self._log.warning(
            "exited",
            "Label Studio ingest: the sender process exited (code %s) with %d events it had not "
            "delivered (counted as dropped: sender_exited); starting a new one",
            code,
            held,
        )
        self._pause()

    def _pause(self) -> None:
        """Wait before the next start of a sender (a close request ends the wait)."""
        until = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, RESTART_BACKOFF_MAX)
        while not self._close_queued and (remaining := until - time.monotonic()) > 0:
            select.select([self._wake_r], [], [], remaining)
            self._clear_wake()

    def _clear_wake(self) -> None:
        while True:
            try:
                if not os.read(self._wake_r, 4096):
                    return
            except BlockingIOError:
                return

    def _stop_sender(self) -> None:
        proc = self._proc
        if proc is not None:
            proc.kill()

    def _drop_backlog(self) -> None:
        """Stopped: what never reached a sender is dropped (closed)."""
        with self._lock:
            dropped = Counter(topic for _, topic, _ in self._backlog if topic is not None)
            self._backlog.clear()
            self._backlog_bytes = 0
        if dropped:
            self.counters.retire(dropped, DropReason.CLOSED)
            logger.warning(
                "Label Studio ingest: closed with %d events not delivered to Kafka", sum(dropped.values())
            )

    def _after_fork_in_child(self) -> None:
        """The child of a fork shares the parent's way to its sender: let go of it and start over."""
        for sock in (self._sock, self._starting_sock):
            if sock is not None:
                sock.close()
        if self._status_fd is not None:
            _close_quietly(self._status_fd)
        self._wake_closer()  # now, not at a later collection, when the numbers may be reused
        self._proc = None  # the parent's child, not ours to wait for
        self._init_state()


def _close_quietly(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _sender_environment() -> dict[str, str]:
    """The app's environment without the interpreter's ``PYTHON*`` variables (``-I`` ignores them
    anyway): nothing the sender starts inherits the app's ``PYTHONPATH`` either."""
    return {name: value for name, value in os.environ.items() if not name.startswith("PYTHON")}

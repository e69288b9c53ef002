"""The sender process: kafka-python's work, away from the app's GIL.

Started by :class:`~labelstudio_ingest.producer.process_transport.SenderProcessTransport` as
``python -I -c BOOTSTRAP IN OUT`` (isolated from the app's ``PYTHONPATH`` and ``sitecustomize``; the
app's ``sys.path`` is the first message on ``IN``) with two descriptors. It reads the settings
next, then records (and flush / close requests) from ``IN``, hands them to an ordinary
:class:`~labelstudio_ingest.producer.transport.Transport` -- bounded buffer, retries, broker outages --
and reports on ``OUT``: ``ready``, its counters whenever they change, and its log records, which the
app's process logs under the same logger names.

The app closing its end of ``IN`` (at :meth:`close`, at exit, or because it died) is the only way to
stop it: it then delivers what it can within the close timeout and exits. It ignores SIGINT and
SIGTERM, which a terminal or a process supervisor may send to the whole process group, so that the
app's own shutdown decides when buffered events are flushed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from labelstudio_ingest.producer.pipe import FrameReader, frame, write_all
from labelstudio_ingest.producer.transport import Record, Transport

_REPORT_EVERY = 0.25
_REPORT_EVERY_FLUSHING = 0.02
_FLUSHING_FOR = 5.0
READ_PAUSE = 0.005
"""Seconds the sender waits after reading before it reads again. Records then arrive in batches,
and the app's writes do not wake the sender (a wake-up can preempt the app's thread for as long as
the sender works on the record); it costs at most this much delivery latency."""
FORWARDED_LOGGERS = ("labelstudio_ingest", "kafka")
"""Loggers whose records the sender process sends to the app's process."""


class _Link:
    """The way back to the app: whole messages, one writer at a time, nothing if the app is gone."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()

    def send(self, message: tuple[Any, ...]) -> None:
        data = frame(message)
        # OSError: the app exited, its end of the pipe is closed, and our input ends soon too
        with self._lock, contextlib.suppress(OSError):
            write_all(self._fd, data)


class _ForwardLogs(logging.Handler):
    def __init__(self, link: _Link) -> None:
        super().__init__()
        self._link = link

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            where = (record.pathname, record.lineno, record.funcName, record.threadName, record.created)
            self._link.send(("log", record.levelno, record.name, message, where))
        except Exception:  # pragma: no cover - a log record must never stop the sender
            self.handleError(record)


class _Reporter(threading.Thread):
    """Sends the transport's counters whenever they changed: often while a flush waits, else seldom."""

    def __init__(self, link: _Link, transport: Transport) -> None:
        super().__init__(name="labelstudio-ingest-reporter", daemon=True)
        self._link = link
        self._transport = transport
        self._done = threading.Event()
        self._flushing_until = 0.0
        self._last: tuple[Any, ...] | None = None

    def hurry(self) -> None:
        """A flush waits: report every change at once for a while."""
        self._flushing_until = time.monotonic() + _FLUSHING_FOR

    def report(self) -> None:
        counters = self._transport.counters
        tables = {
            topic: (stats.published, stats.failed, dict(stats.dropped_by_reason))
            for topic, stats in counters.by_topic().items()
        }
        message = ("stats", tables, counters.connection_errors)
        if message != self._last:
            self._last = message
            self._link.send(message)

    def run(self) -> None:
        while not self._done.wait(
            _REPORT_EVERY_FLUSHING if time.monotonic() < self._flushing_until else _REPORT_EVERY
        ):
            self.report()

    def stop(self) -> None:
        self._done.set()
        self.join()
        self.report()


def _forward_logs(link: _Link, levels: dict[str, int]) -> None:
    handler = _ForwardLogs(link)
    for name in FORWARDED_LOGGERS:
        log = logging.getLogger(name)
        log.setLevel(levels.get(name, logging.WARNING))
        log.addHandler(handler)
        log.propagate = False


def serve(inbound: int, outbound: int) -> int:
    """Run until the app closes ``inbound``; returns the exit code."""
    link = _Link(outbound)
    messages = iter(FrameReader(inbound, pause=READ_PAUSE))
    init = next(messages, None)
    if init is None or init[0] != "init":
        return 2
    _, settings, max_events, max_bytes, exit_timeout, levels = init
    _forward_logs(link, levels)
    transport = Transport(
        settings=settings,
        max_buffered_events=max_events,
        max_buffered_bytes=max_bytes,
        exit_timeout=exit_timeout,
    )
    reporter = _Reporter(link, transport)
    reporter.start()
    link.send(("ready", os.getpid()))
    close_timeout: float | None = exit_timeout
    submit = transport.submit
    for message in messages:
        kind = message[0]
        if kind == "r":
            submit(Record(message[1], message[2], message[3], list(message[4])))
        elif kind == "f":
            reporter.hurry()
            transport.flush(0)  # no wait: only makes the client send now rather than after linger_ms
        elif kind == "c":
            close_timeout = message[1]
    transport.close(close_timeout)
    reporter.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point, called by ``BOOTSTRAP`` (or ``python -m labelstudio_ingest.producer.sender_process
    IN OUT`` by hand) once ``sys.path`` is the app's."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m labelstudio_ingest.producer.sender_process IN_FD OUT_FD", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return serve(int(args[0]), int(args[1]))


if __name__ == "__main__":
    sys.exit(main())

"""Producer counters: plain numbers always, Prometheus collectors too when ``prometheus-client`` is installed.

Every transport keeps one :class:`Counters`; a single process-wide collector (registered on first use in
``prometheus_client.REGISTRY``) reports the sum over all live transports, per topic:

- ``labelstudio_ingest_producer_published_total{topic}``: events the broker acknowledged.
- ``labelstudio_ingest_producer_failed_total{topic}``: events the broker refused for good.
- ``labelstudio_ingest_producer_dropped_total{topic,reason}``: events discarded before delivery
  (``reason="sampled_out"``: left out on purpose by sampling; every other reason is a loss).
- ``labelstudio_ingest_producer_buffered_events{topic}``: events waiting or in flight right now.
- ``labelstudio_ingest_producer_connection_errors_total``: failed attempts to connect to Kafka (no broker
  answers, TLS handshake or SASL authentication refused); the events wait in the buffer meanwhile.

With the sender process (``process_transport.py``) the collector lives in the app's process: what
the sender published, failed or dropped comes from its reports, at most 0.25 s old.
"""

from __future__ import annotations

import functools
import logging
import threading
import weakref
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from labelstudio_ingest.schemas._compat import StrEnum

try:  # optional: not part of the producer extra
    from prometheus_client import REGISTRY
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    HAVE_PROMETHEUS = True
except ImportError:  # pragma: no cover - exercised in a subprocess by the tests
    HAVE_PROMETHEUS = False

logger = logging.getLogger(__name__)

METRIC_PREFIX = "labelstudio_ingest_producer"


class DropReason(StrEnum):
    """Why an event never reached the broker. Stable codes: used as a metric label."""

    BUFFER_FULL = "buffer_full"
    """The bounded buffer was full (broker away for long, or slower than the app)."""
    OVERSIZED = "oversized"
    """The encoded event is larger than ``Limits.max_event_bytes``."""
    INVALID = "invalid"
    """No valid event could be built (a run end without its start, a shape the contract refuses, ...)."""
    CLOSED = "closed"
    """The handler was closed (or the process exited) before the event was delivered."""
    SENDER_EXITED = "sender_exited"
    """The sender process died (killed, out of memory) holding the event; a new one took over."""
    REDACT_FAILED = "redact_failed"
    """The ``redact`` hook raised (or returned a non-string): the event is not sent unredacted."""
    SAMPLED_OUT = "sampled_out"
    """Left out on purpose by sampling (``sample_rate``, the per-call override): not a loss."""


@dataclass(frozen=True, slots=True)
class ProducerStats:
    """A snapshot of a producer's counters."""

    published: int = 0
    """Events the broker acknowledged."""
    failed: int = 0
    """Events the broker refused for good (e.g. not authorised, record rejected)."""
    dropped: int = 0
    """Events discarded before delivery, all reasons together."""
    buffered: int = 0
    """Events waiting in the buffer or in flight to the broker."""
    dropped_by_reason: Mapping[str, int] = field(default_factory=dict)
    """``dropped`` split by :class:`DropReason` value."""
    connection_errors: int = 0
    """Failed attempts of this producer to connect to Kafka (unreachable, TLS or SASL refused); not
    per topic: every topic of one producer shows the same number."""


@dataclass(slots=True)
class TopicCounts:
    """One topic's counts on one side of a transport (the app's threads, or the background)."""

    submitted: int = 0
    published: int = 0
    failed: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    discarded: Counter[str] = field(default_factory=Counter)


class Counters:
    """Thread-safe per-topic counters of one transport.

    The app's threads (:meth:`submitted`, :meth:`rejected`) and the background threads (the rest)
    count under separate locks, so an app thread never waits for a lock a background thread holds:
    with the GIL, such a wait can cost the app thread a whole switch interval (5 ms).
    """

    def __init__(self) -> None:
        self._app_lock = threading.Lock()
        self._background_lock = threading.Lock()
        self._app: dict[str, TopicCounts] = {}
        self._background: dict[str, TopicCounts] = {}
        self._connection_errors = 0
        _LIVE.add(self)
        register_prometheus_collector()

    @staticmethod
    def _for(table: dict[str, TopicCounts], topic: str) -> TopicCounts:
        counts = table.get(topic)
        if counts is None:
            counts = table[topic] = TopicCounts()
        return counts

    def submitted(self, topic: str) -> None:
        """An app thread buffered an event."""
        with self._app_lock:
            self._for(self._app, topic).submitted += 1

    def rejected(self, topic: str, reason: DropReason) -> None:
        """An app thread dropped an event before buffering it."""
        with self._app_lock:
            self._for(self._app, topic).rejected[reason.value] += 1

    def published(self, topic: str) -> None:
        """A buffered event was acknowledged."""
        with self._background_lock:
            self._for(self._background, topic).published += 1

    def failed(self, topic: str) -> None:
        """A buffered event was refused for good."""
        with self._background_lock:
            self._for(self._background, topic).failed += 1

    def discarded(self, topic: str, reason: DropReason) -> None:
        """A buffered event was dropped (e.g. still undelivered at close)."""
        with self._background_lock:
            self._for(self._background, topic).discarded[reason.value] += 1

    def connection_error(self) -> None:
        """An attempt to connect to Kafka failed (the sender thread)."""
        with self._background_lock:
            self._connection_errors += 1

    @property
    def connection_errors(self) -> int:
        """Failed attempts to connect to Kafka so far."""
        return self._connection_errors

    def snapshot(self, topic: str | None = None) -> ProducerStats:
        """The counters of one topic, or of all topics together."""
        with self._app_lock, self._background_lock:
            topics = [topic] if topic is not None else list(self._app.keys() | self._background.keys())
            empty = TopicCounts()
            app = [self._app.get(t, empty) for t in topics]
            background = [self._background.get(t, empty) for t in topics]
            dropped: Counter[str] = Counter()
            for counts in (*app, *background):
                dropped.update(counts.rejected)
                dropped.update(counts.discarded)
            published = sum(c.published for c in background)
            failed = sum(c.failed for c in background)
            discarded = sum(sum(c.discarded.values()) for c in background)
            return ProducerStats(
                published=published,
                failed=failed,
                dropped=sum(dropped.values()),
                buffered=max(sum(c.submitted for c in app) - published - failed - discarded, 0),
                dropped_by_reason=dict(dropped),
                connection_errors=self._connection_errors,
            )

    def by_topic(self) -> dict[str, ProducerStats]:
        """A snapshot per topic."""
        with self._app_lock, self._background_lock:
            topics = list(self._app.keys() | self._background.keys())
        return {topic: self.snapshot(topic) for topic in topics}


_LIVE: weakref.WeakSet[Counters] = weakref.WeakSet()


def totals_by_topic() -> dict[str, ProducerStats]:
    """The counters of every live transport in this process, summed per topic."""
    totals: dict[str, ProducerStats] = {}
    for counters in list(_LIVE):
        for topic, stats in counters.by_topic().items():
            before = totals.get(topic, ProducerStats())
            dropped = Counter(before.dropped_by_reason)
            dropped.update(stats.dropped_by_reason)
            totals[topic] = ProducerStats(
                published=before.published + stats.published,
                failed=before.failed + stats.failed,
                dropped=before.dropped + stats.dropped,
                buffered=before.buffered + stats.buffered,
                dropped_by_reason=dict(dropped),
            )
    return totals


class _PrometheusCollector:
    """Reports :func:`totals_by_topic` in the Prometheus data model."""

    def collect(self) -> Iterable[Any]:
        published = CounterMetricFamily(
            f"{METRIC_PREFIX}_published", "Events the broker acknowledged.", labels=["topic"]
        )
        failed = CounterMetricFamily(
            f"{METRIC_PREFIX}_failed", "Events the broker refused for good.", labels=["topic"]
        )
        dropped = CounterMetricFamily(
            f"{METRIC_PREFIX}_dropped",
            "Events discarded before delivery, by reason.",
            labels=["topic", "reason"],
        )
        buffered = GaugeMetricFamily(
            f"{METRIC_PREFIX}_buffered_events",
            "Events waiting in the buffer or in flight to the broker.",
            labels=["topic"],
        )
        connection_errors = CounterMetricFamily(
            f"{METRIC_PREFIX}_connection_errors",
            "Failed attempts to connect to Kafka (unreachable, TLS or SASL refused).",
        )
        connection_errors.add_metric([], sum(c.connection_errors for c in list(_LIVE)))
        for topic, stats in sorted(totals_by_topic().items()):
            published.add_metric([topic], stats.published)
            failed.add_metric([topic], stats.failed)
            buffered.add_metric([topic], stats.buffered)
            for reason in DropReason:
                dropped.add_metric([topic, reason.value], stats.dropped_by_reason.get(reason.value, 0))
        return [published, failed, dropped, buffered, connection_errors]


@functools.cache
def register_prometheus_collector() -> bool:
    """Register the process-wide collector in ``prometheus_client.REGISTRY`` (once).

    Returns whether the collector is registered (false when prometheus-client is not installed).
    """
    if not HAVE_PROMETHEUS:
        return False
    try:
        REGISTRY.register(_PrometheusCollector())
    except ValueError as exc:  # already registered by another copy of this module
        logger.debug("producer metrics not registered: %s", exc)
    return True

"""The consumer service: wiring, the run loop, backoff while Label Studio is away, and shutdown.

One thread does all Kafka and Label Studio work (one import in flight); the HTTP server for
metrics and probes runs beside it. SIGTERM/SIGINT stop polling; the batch in flight gets
``INGEST_SHUTDOWN_TIMEOUT_S`` to finish (else it is left uncommitted, to be redone by the next
owner), then the outbox is flushed, the consumer leaves the group and the process exits 0.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

import httpx
from kafka import KafkaAdminClient, KafkaConsumer
from label_studio_sdk import LabelStudio

from labelstudio_ingest.consumer.backoff import Backoff
from labelstudio_ingest.consumer.errors import LabelStudioUnavailable, Rebalanced, UncertainTooRecent
from labelstudio_ingest.consumer.health import HealthServer
from labelstudio_ingest.consumer.ledger import Ledger
from labelstudio_ingest.consumer.logs import Masker
from labelstudio_ingest.consumer.metrics import Metrics
from labelstudio_ingest.consumer.outbox import Outbox
from labelstudio_ingest.consumer.pipeline import Pipeline
from labelstudio_ingest.consumer.projects import Project, ProjectResolver
from labelstudio_ingest.consumer.settings import Settings
from labelstudio_ingest.consumer.sink import LabelStudioSink
from labelstudio_ingest.consumer.source import Source
from labelstudio_ingest.consumer.topics import ensure_topics, ledger_topic_configs

if TYPE_CHECKING:
    from labelstudio_ingest.consumer.webhooks_cli import Endpoint

log = logging.getLogger(__name__)

GC_THRESHOLDS = (10_000, 50, 50)
"""Collect young objects every 10k allocations instead of 700 (a batch allocates many short-lived ones)."""
CLOSE_TIMEOUT_S = 5.0
"""Budget for leaving the group and closing the producer at shutdown."""
PROBE_CACHE_S = 5.0
DAY_MS = 86_400_000


def tune_gc() -> None:
    """Move everything alive after start-up (modules, SDK models, clients) out of the collector's way.

    The cyclic collector otherwise walks ~130k start-up objects again and again; with them frozen
    and a larger young generation, the per-event CPU cost drops by about a third (docs/PERFORMANCE.md).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


@dataclass
class _Probe:
    checked_at: float = -1e9
    ok: bool = False


class ConsumerApp:
    """``labelstudio-ingest consume``: build with :meth:`build`, then :meth:`run`."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.stop = threading.Event()
        self._stop_deadline: float | None = None
        self._probe = _Probe()
        self._probe_lock = threading.Lock()
        self._outage = False
        self._batches = 0
        self._generation: int | None = None
        """The source generation of the batch in flight (None between batches)."""
        self._built = False
        self.health: HealthServer | None = None
        self.webhooks: Endpoint | None = None

    # --- wiring -----------------------------------------------------------------------------------
    def build(self) -> bool:
        """Start the HTTP server, check the topics, and connect to Kafka and Label Studio.

        Returns False when a stop was requested while waiting for the input topic.
        """
        s = self.settings
        self.health = HealthServer(s.metrics_host, s.metrics_port, self.metrics.registry, self.readiness)
        self.health.start()
        log.info("serving /metrics /healthz /readyz", extra={"port": self.health.port})

        security = s.kafka_security()
        servers = s.bootstrap_servers.split(",")
        client_id = f"labelstudio-ingest-{os.getpid()}"
        admin = KafkaAdminClient(bootstrap_servers=servers, client_id=client_id, **security)
        try:
            partitions = ensure_topics(
                admin,
                topic=s.topic,
                ledger_topic=s.ledger,
                dlq_topic=s.dlq,
                create=s.create_topics,
                ledger_configs=ledger_topic_configs(
                    int(s.dedup_horizon_days * DAY_MS), s.dedup_max_run_ids, s.max_inputs
                ),
                stop=self.stop,
                retention_check=s.ledger_retention_check,
            )
        finally:
            admin.close()
        if not partitions:
            return False
        log.info("topics ready", extra={"topic": s.topic, "partitions": partitions, "ledger": s.ledger})
        if s.webhook_port is not None:  # the feedback endpoint, on its own port (docs/FEEDBACK.md)
            from labelstudio_ingest.consumer.webhooks_cli import start_endpoint  # noqa: PLC0415

            self.webhooks = start_endpoint(s, self.metrics, partitions)

        self.outbox = Outbox.connect(s.bootstrap_servers, client_id, **security)
        self.ledger = Ledger(
            self.outbox,
            s.ledger,
            horizon_ms=int(s.dedup_horizon_days * DAY_MS),
            max_run_ids=s.dedup_max_run_ids,
            reader_factory=lambda: KafkaConsumer(
                bootstrap_servers=servers,
                client_id=f"{client_id}-ledger",
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                **security,
            ),
        )
        consumer = KafkaConsumer(
            bootstrap_servers=servers,
            client_id=client_id,
            group_id=s.group_id,
            enable_auto_commit=False,
            auto_offset_reset=s.auto_offset_reset,
            max_poll_records=s.batch_size,
            max_poll_interval_ms=s.max_poll_interval_ms,
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=s.heartbeat_interval_ms,
            **security,
        )
        self.source = Source(
            consumer,
            s.topic,
            ledger=self.ledger,
            metrics=self.metrics,
            on_revoke=self.outbox.flush,
            restore_budget_s=max(0.2, s.max_poll_interval_ms / 4000),
        )
        http = httpx.Client(
            timeout=s.import_timeout_s,
            follow_redirects=True,
            event_hooks={"request": [self._before_request]},
        )
        self.client = LabelStudio(  # type: ignore[no-untyped-call]
            base_url=str(s.label_studio_url).rstrip("/"),
            api_key=s.label_studio_api_key.get_secret_value(),
            httpx_client=http,
            max_retries=0,  # every retry is ours: backoff with partitions paused
        )
        self.sink = LabelStudioSink(
            self.client,
            str(s.label_studio_url),
            timeout_s=s.import_timeout_s,
            metrics=self.metrics,
            max_request_bytes=s.import_max_bytes,
            max_request_tasks=s.import_max_tasks,
        )
        self.resolver = ProjectResolver(
            self.client,
            allow_create=s.allow_create_projects,
            allowlist=s.allowlist,
            cache_ttl_s=s.project_cache_ttl_s,
            settle_s=s.project_settle_s,
            on_created=self._project_created,
            creation=s.creation_policy,
        )
        self.pipeline = Pipeline(
            ledger=self.ledger,
            sink=self.sink,
            resolver=self.resolver,
            outbox=self.outbox,
            metrics=self.metrics,
            limits=s.limits,
            dlq_topic=s.dlq,
            group_id=s.group_id,
            crash=self._crash_point,
            mask=Masker(s.secrets()),
            settle_s=s.import_timeout_s,
            trace_url_template=s.trace_url_template,
            meta_max_bytes=s.meta_max_bytes,
        )
        self.backoff = Backoff(s.backoff_initial_s, s.backoff_max_s)
        self._built = True
        return True

    def _before_request(self, request: httpx.Request) -> None:
        """Before every Label Studio request of a batch: keep the group membership alive, and
        refuse to send anything for a batch whose partitions may have moved (raises Rebalanced):
        the assignment changed, or the group has not confirmed this member lately (a member
        frozen or cut off past the session timeout, whose revoke callback has not come yet)."""
        if self._generation is not None:
            self.source.keepalive(self._generation)
            self.source.confirm_membership(self._generation)

    def _project_created(self, project: Project) -> None:
        self.metrics.projects_created.inc()
        log.info("created project", extra={"project_id": project.id, "title": project.title})

    # --- signals --------------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT ask for a graceful stop (main thread only)."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.request_stop(signal.Signals(signum).name)

    def request_stop(self, why: str = "requested") -> None:
        """Stop polling; the batch in flight has ``INGEST_SHUTDOWN_TIMEOUT_S`` to finish."""
        if self.stop.is_set():
            return
        self._stop_deadline = time.monotonic() + self.settings.shutdown_timeout_s
        if self._built:
            self.sink.deadline = self._stop_deadline
        self.stop.set()
        log.info("stopping", extra={"reason": why, "timeout_s": self.settings.shutdown_timeout_s})

    # --- the loop -------------------------------------------------------------------------------
    def run(self) -> int:
        """Consume until stopped; returns the process exit code."""
        if self.stop.is_set() or not self._built:
            self.close()
            return 0
        self.source.subscribe()
        tune_gc()
        try:
            while not self.stop.is_set():
                self.source.restore_step()
                records = self.source.poll_batch(
                    self.settings.batch_size, self.settings.batch_max_wait_ms / 1000, self.stop
                )
                if records:
                    self._handle(records)
                self.source.update_lag()
                self.metrics.ledger_run_ids.set(self.ledger.remembered())
        except Exception:
            log.exception("stopping on an unexpected error; uncommitted records will be consumed again")
            self.close(commit_ok=False)
            return 1
        self.close()
        return 0

    def _handle(self, records: list[Any]) -> None:
        self._batches += 1
        self.source.pause_all()
        self._generation = generation = self.source.generation
        try:
            batch = self.pipeline.start(records, self._batches)
            while True:
                try:
                    self.pipeline.process(batch)
                    break
                except LabelStudioUnavailable as exc:
                    if self.pipeline.escalate(
                        batch, exc, after=self.settings.isolate_after_failures, stopping=self.stop.is_set()
                    ):
                        continue
                    if not self._retry_after(exc, generation):
                        self.source.rewind(records)
                        return
                except UncertainTooRecent as exc:
                    if not self._wait_uncertain(exc, generation):
                        self.source.rewind(records)
                        return
            self._recovered()
            self.pipeline.finish(batch)
            self._crash_point("ledger", batch.number)
            self.source.commit(batch.next_offsets(), generation)
        except Rebalanced:
            log.info(
                "the assignment changed during a batch; it will be consumed again",
                extra={"batch": self._batches},
            )
            self.outbox.flush()
            self.source.rewind(records)
        finally:
            self._generation = None
            self.source.resume_ready()

    def _retry_after(self, exc: LabelStudioUnavailable, generation: int) -> bool:
        """Back off (partitions paused, still polling); False when shutdown leaves no time."""
        if self._stop_deadline is not None and time.monotonic() >= self._stop_deadline:
            log.warning("shutting down with Label Studio unavailable; the batch stays uncommitted")
            return False
        delay = self.backoff.next_delay()
        if self._stop_deadline is not None:
            delay = min(delay, max(0.0, self._stop_deadline - time.monotonic()))
        self._outage = True
        self.metrics.paused.set(1)
        self.metrics.ls_retries.inc()
        log.warning(
            "Label Studio unavailable; partitions paused, retrying the batch",
            extra={
                "kind": exc.kind,
                "retry_in_s": round(delay, 2),
                "attempt": self.backoff.attempts,
                "error": str(exc),
            },
        )
        self.source.wait(delay, generation)
        return True

    def _wait_uncertain(self, exc: UncertainTooRecent, generation: int) -> bool:
        """Wait until an uncertain run's import can no longer be applied (partitions paused, still
        polling); not an outage. False when shutdown leaves no time (the batch stays uncommitted)."""
        delay = exc.wait_s
        if self._stop_deadline is not None:
            left = self._stop_deadline - time.monotonic()
            if left < delay:
                log.warning("shutting down before uncertain runs can be checked; batch left uncommitted")
                return False
        self.metrics.uncertain_waits.inc()
        log.info(
            "uncertain runs too recent to ask Label Studio; waiting with partitions paused",
            extra={"runs": exc.runs, "wait_s": round(delay, 2)},
        )
        started = time.monotonic()
        try:  # a stop cuts the wait short once; after that the wait fits in what the shutdown leaves
            self.source.wait(delay, generation, None if self.stop.is_set() else self.stop)
        finally:
            self.metrics.uncertain_wait_seconds.inc(time.monotonic() - started)
        return True

    def _recovered(self) -> None:
        if self._outage:
            log.info("Label Studio is back; consuming again")
        self._outage = False
        self.backoff.reset()
        self.metrics.paused.set(0)

    # --- test-only fault injection --------------------------------------------------------------
    def _crash_point(self, point: str, batch_number: int) -> None:
        s = self.settings
        if s.fault_crash_after == point and batch_number == s.fault_crash_batch:
            log.warning("TEST FAULT: killing the process", extra={"after": point, "batch": batch_number})
            logging.shutdown()
            os.kill(os.getpid(), signal.SIGKILL)

    # --- readiness and shutdown -----------------------------------------------------------------
    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready when partitions are assigned (and restored) and Label Studio answers."""
        if not self._built:
            return False, {"reason": "starting"}
        assigned = len(self.source.assigned)
        restoring = len(self.source.restoring)
        ls_ok = self._label_studio_ok()
        ready = assigned > 0 and ls_ok and not self._outage and not self.stop.is_set()
        return ready, {
            "partitions_assigned": assigned,
            "partitions_restoring": restoring,
            "label_studio_reachable": ls_ok,
            "label_studio_outage": self._outage,
            "stopping": self.stop.is_set(),
        }

    def _label_studio_ok(self) -> bool:
        with self._probe_lock:
            now = time.monotonic()
            if now - self._probe.checked_at >= PROBE_CACHE_S:
                self._probe = _Probe(now, self.sink.reachable())
            return self._probe.ok

    def close(self, *, commit_ok: bool = True) -> None:
        """Flush, leave the group, close clients and the HTTP server."""
        if self._built:
            if commit_ok:
                try:
                    self.outbox.flush(timeout_s=CLOSE_TIMEOUT_S)
                except Exception:
                    log.warning("could not flush the outbox at shutdown", exc_info=True)
            self.source.close(CLOSE_TIMEOUT_S)
            self.ledger.close()
            self.outbox.close(CLOSE_TIMEOUT_S)
        if self.webhooks is not None:
            self.webhooks.stop()
        if self.health is not None:
            self.health.stop()
        log.info("stopped")


__all__ = ["ConsumerApp"]

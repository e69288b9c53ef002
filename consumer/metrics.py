"""Prometheus metrics of the consumer, in a registry of their own (no process-global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_PREFIX = "ingest"


class Metrics:
    """Every metric the consumer exports; docs/CONSUMER.md explains each one."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.events_consumed = Counter(
            f"{_PREFIX}_events_consumed", "Records read from the input topic.", registry=r
        )
        self.events_valid = Counter(
            f"{_PREFIX}_events_valid", "Records that decoded into a valid event.", registry=r
        )
        self.dead_lettered = Counter(
            f"{_PREFIX}_events_dead_lettered",
            "Records sent to the dead-letter topic, by reason and stage.",
            ["reason", "stage"],
            registry=r,
        )
        self.tasks_imported = Counter(
            f"{_PREFIX}_tasks_imported",
            "Tasks created in Label Studio, by project.",
            ["project_id"],
            registry=r,
        )
        self.runs_imported = Counter(
            f"{_PREFIX}_runs_imported", "Runs (events) whose tasks were created in Label Studio.", registry=r
        )
        self.duplicates = Counter(
            f"{_PREFIX}_duplicates_skipped",
            "Events not imported because their run_id already was; by where that was known "
            "(ledger, batch, label_studio).",
            ["source"],
            registry=r,
        )
        self.rekeyed = Counter(
            f"{_PREFIX}_events_rekeyed",
            "Valid events whose record key was not their canonical run_id, re-published under it.",
            registry=r,
        )
        self.projects_created = Counter(
            f"{_PREFIX}_projects_created", "Label Studio projects created by this consumer.", registry=r
        )
        self.import_latency = Histogram(
            f"{_PREFIX}_import_duration_seconds",
            "Duration of one bulk-import request to Label Studio, by outcome.",
            ["outcome"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.batch_size = Histogram(
            f"{_PREFIX}_batch_size",
            "Records per processed batch.",
            buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
            registry=r,
        )
        self.ls_errors = Counter(
            f"{_PREFIX}_label_studio_errors",
            "Failed Label Studio requests, by kind (connect, timeout, transport, http_<status>).",
            ["kind"],
            registry=r,
        )
        self.ls_retries = Counter(
            f"{_PREFIX}_label_studio_retries",
            "Retries of a batch after Label Studio was unavailable (partitions paused meanwhile).",
            registry=r,
        )
        self.uncertain_checks = Counter(
            f"{_PREFIX}_uncertain_checks",
            "run_ids looked up in Label Studio because an import of them may or may not have happened.",
            registry=r,
        )
        self.uncertain_waits = Counter(
            f"{_PREFIX}_uncertain_waits",
            "Waits before asking Label Studio about uncertain runs whose pending marker was too recent "
            "(an import sent then might still be applied).",
            registry=r,
        )
        self.uncertain_wait_seconds = Counter(
            f"{_PREFIX}_uncertain_wait_seconds",
            "Seconds spent in those waits (partitions paused).",
            registry=r,
        )
        self.consumer_lag = Gauge(
            f"{_PREFIX}_consumer_lag",
            "Records in an assigned partition not yet committed by this group (high watermark - committed).",
            ["topic", "partition"],
            registry=r,
        )
        self.partitions_assigned = Gauge(
            f"{_PREFIX}_partitions_assigned", "Input partitions assigned to this consumer.", registry=r
        )
        self.paused = Gauge(
            f"{_PREFIX}_paused",
            "1 while consumption is paused because Label Studio is unavailable, else 0.",
            registry=r,
        )
        self.ledger_run_ids = Gauge(
            f"{_PREFIX}_ledger_run_ids",
            "run_ids remembered for deduplication (assigned partitions).",
            registry=r,
        )
        self.rebalances = Counter(
            f"{_PREFIX}_rebalances", "Partition assignments received from the group.", registry=r
        )
        self.webhooks_received = Counter(
            f"{_PREFIX}_webhooks_received",
            "Label Studio webhook requests received, by action.",
            ["action"],
            registry=r,
        )
        self.webhooks_refused = Counter(
            f"{_PREFIX}_webhooks_refused",
            "Webhook requests answered with an error status, by reason (unauthorized, not_json, ...).",
            ["reason"],
            registry=r,
        )
        self.feedback_published = Counter(
            f"{_PREFIX}_feedback_published", "Feedback events published (broker acknowledged).", registry=r
        )
        self.feedback_skipped = Counter(
            f"{_PREFIX}_feedback_skipped",
            "Webhook calls answered 200 without publishing, by reason (duplicate, not_ingested, ...).",
            ["reason"],
            registry=r,
        )


__all__ = ["Metrics"]

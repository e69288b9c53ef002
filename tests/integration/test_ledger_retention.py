"""An existing ledger topic that deletes records before the dedup horizon is refused at start-up.

A broker's default retention (7 days on Kafka) silently beats a 30-day horizon, and a
``retention.bytes`` sized for tiny runs deletes the markers of big ones early; either way a restart
imports runs again. The consumer reads the topic's configs (DescribeConfigs) and refuses to start,
or warns with ``INGEST_LEDGER_RETENTION_CHECK=warn``. tansu reports the configs a topic was created
with (and nothing for the others), so the tests create the ledger topic with explicit ones.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import pytest
from kafka import KafkaAdminClient

from labelstudio_ingest.consumer.topics import (
    ensure_topics,
    ledger_topic_configs,
    retention_shortfalls,
    topic_configs,
)
from tests.consumer.runner import Rig, eventually

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000
HORIZON_MS = 30 * DAY_MS
"""The default INGEST_DEDUP_HORIZON_DAYS."""


def start_up_message(rig: Rig, ledger: str, **settings: str) -> tuple[int | None, str]:
    """Start a consumer with ``ledger`` as its ledger topic; its exit code (None: still running) and log."""
    consumer = rig.consumer("retention", INGEST_LEDGER_TOPIC=ledger, **settings).start()
    try:
        eventually(lambda: not consumer.running() or consumer.is_ready(), timeout=60, message="not started")
        return (None if consumer.running() else consumer.wait_exit()), consumer.log_text()
    finally:
        consumer.kill()


def test_a_ledger_topic_kept_seven_days_stops_a_consumer_with_a_thirty_day_horizon(
    rig: Rig, kafka_topic: Callable[..., str], rig_partitions: int
) -> None:
    ledger = kafka_topic(rig_partitions, retention_ms=str(7 * DAY_MS), retention_bytes="-1")
    code, log = start_up_message(rig, ledger)
    assert code == 1, log
    assert f"the ledger topic {ledger!r} deletes records too early" in log
    assert f"retention.ms={7 * DAY_MS} is below the {HORIZON_MS}" in log


def test_a_ledger_topic_sized_at_200_bytes_a_run_stops_start_up(
    rig: Rig, kafka_topic: Callable[..., str], rig_partitions: int
) -> None:
    ledger = kafka_topic(rig_partitions, retention_ms=str(HORIZON_MS), retention_bytes=str(200 * 1_000_000))
    code, log = start_up_message(rig, ledger)
    assert code == 1, log
    assert "retention.bytes=200000000 is below" in log


def test_with_the_check_set_to_warn_the_consumer_starts_and_says_why_it_should_not(
    rig: Rig, kafka_topic: Callable[..., str], rig_partitions: int
) -> None:
    ledger = kafka_topic(rig_partitions, retention_ms=str(7 * DAY_MS))
    code, log = start_up_message(rig, ledger, INGEST_LEDGER_RETENTION_CHECK="warn")
    assert code is None, log
    assert "deletes records too early" in log


def test_a_ledger_topic_the_consumer_creates_passes_its_own_check_as_tansu_reports_it(
    kafka_admin: KafkaAdminClient, kafka_topic: Callable[..., str]
) -> None:
    topic = kafka_topic(2)
    ledger, dlq = f"{topic}.ledger", f"{topic}.dlq-{uuid.uuid4().hex[:6]}"
    wanted = ledger_topic_configs(HORIZON_MS, 1_000_000)
    partitions = ensure_topics(
        kafka_admin,
        topic=topic,
        ledger_topic=ledger,
        dlq_topic=dlq,
        create=True,
        ledger_configs=wanted,
        stop=threading.Event(),
    )
    assert partitions == 2
    reported = topic_configs(kafka_admin, ledger)
    assert reported["retention.ms"] == str(HORIZON_MS)
    assert reported["retention.bytes"] == wanted["retention.bytes"]
    assert retention_shortfalls(reported, wanted) == []

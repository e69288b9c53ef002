"""Producer test helpers: brokers these tests start and stop themselves, and reading events back.

The session broker of ``tests/harness.py`` is shared and must stay up; tests that take a broker away
(or start one late) use the ``own_broker`` fixture: an embedded tansu on a port chosen in advance.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import uuid
from dataclasses import dataclass

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from labelstudio_ingest.schemas import Event, decode

READ_TIMEOUT = 60.0

# Short client timeouts: a test's broker comes and goes within seconds.
FAST_RECOVERY = {
    "bootstrap_timeout_ms": 2_000,
    "request_timeout_ms": 3_000,
    "delivery_timeout_ms": 8_000,
    "max_block_ms": 2_000,
    "reconnect_backoff_max_ms": 500,
    "linger_ms": 5,
}


def unique_topic() -> str:
    """A topic name nobody uses; a broker of our own creates it on first use."""
    return f"test.producer.{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class ReadEvent:
    """One record read back from the topic, decoded."""

    key: bytes
    headers: dict[str, bytes]
    event: Event


def read_events(bootstrap: str, topic: str, expected: int, timeout: float = READ_TIMEOUT) -> list[ReadEvent]:
    """Every record of ``topic`` from the beginning, decoded, once ``expected`` of them are there."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, auto_offset_reset="earliest"
    )
    try:
        deadline = time.monotonic() + timeout
        partitions = None
        while partitions is None:
            try:
                partitions = consumer.partitions_for_topic(topic)
            except KafkaError:
                partitions = None
            if partitions is None:
                if time.monotonic() > deadline:
                    pytest.fail(f"topic {topic} never appeared")
                time.sleep(0.1)
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        records = []
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        # anything beyond what was expected (e.g. a duplicate) must show up too
        for batch in consumer.poll(timeout_ms=300).values():
            records.extend(batch)
    finally:
        consumer.close()
    return [ReadEvent(key=r.key, headers=dict(r.headers), event=decode(r.value)) for r in records]


def run_app(script: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (dedented) as an app of its own: ``python -c``, output captured, never raising."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )

"""The ledger topic against a real broker: what one owner wrote, the next owner restores."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kafka import KafkaConsumer

from labelstudio_ingest.consumer.ledger import PENDING_MARGIN_MS, RESTORE_POLL_RECORDS, Ledger
from labelstudio_ingest.consumer.outbox import Outbox

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000


@pytest.fixture
def outbox(kafka_bootstrap: str) -> Iterator[Outbox]:
    outbox = Outbox.connect(kafka_bootstrap, "ledger-test")
    yield outbox
    outbox.close()


def ledger_on(topic: str, outbox: Outbox, bootstrap: str, **kwargs: Any) -> Ledger:
    options: dict[str, Any] = {"horizon_ms": 30 * DAY_MS, "max_run_ids": 10_000, **kwargs}
    return Ledger(
        outbox,
        topic,
        reader_factory=lambda: KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False),
        **options,
    )


def restore_all(ledger: Ledger, partitions: list[int]) -> None:
    left = set(partitions)
    for _ in range(100):
        left -= ledger.restore(sorted(left), budget_s=1.0)
        if not left:
            return
    raise AssertionError(f"partitions {left} never finished restoring")


def test_a_new_owner_restores_what_the_old_one_wrote(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], outbox: Outbox
) -> None:
    topic = kafka_topic(partitions=2)
    writer = ledger_on(topic, outbox, kafka_bootstrap)
    imported = [uuid.uuid4() for _ in range(2500)]  # more than one record's worth
    uncertain = [uuid.uuid4() for _ in range(3)]
    rejected = uuid.uuid4()
    written_ms = int(time.time() * 1000)
    writer.mark_pending(0, 7, [*imported, *uncertain, rejected])
    writer.mark_imported(0, 7, [(r, [i]) for i, r in enumerate(imported)])
    writer.mark_rejected(0, [rejected])
    writer.mark_imported(1, 8, [(uuid.uuid4(), [1])])
    outbox.flush()

    reader = ledger_on(topic, outbox, kafka_bootstrap)
    try:
        restore_all(reader, [0, 1])
        memory = reader.memory(0)
        assert all(memory.is_imported(r.bytes) for r in imported)
        assert {memory.pending_project(r.bytes) for r in uncertain} == {7}
        # when the marker was written: its record's timestamp, plus the margin for the writer's clock
        for run in uncertain:
            since = memory.pending_since_ms(run.bytes)
            assert since is not None
            assert written_ms + PENDING_MARGIN_MS <= since <= int(time.time() * 1000) + PENDING_MARGIN_MS
        assert memory.pending_project(rejected.bytes) is None
        assert not memory.is_imported(rejected.bytes)
        assert len(reader.memory(1)) == 1
        assert reader.remembered() == len(imported) + 1
    finally:
        reader.close()


def test_a_returning_owner_only_reads_what_is_new(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], outbox: Outbox
) -> None:
    topic = kafka_topic(partitions=1)
    owner = ledger_on(topic, outbox, kafka_bootstrap)
    other = ledger_on(topic, outbox, kafka_bootstrap)
    try:
        first = uuid.uuid4()
        owner.mark_imported(0, 1, [(first, [1])])
        outbox.flush()
        restore_all(owner, [0])
        position = owner.memory(0).position

        second = uuid.uuid4()  # written by another member while the partition was away
        other.mark_imported(0, 1, [(second, [2])])
        outbox.flush()
        owner.retain([0])
        restore_all(owner, [0])
        assert owner.memory(0).position == position + 1
        assert owner.memory(0).is_imported(second.bytes)
        owner.retain([])
        assert owner.remembered() == 0
    finally:
        owner.close()
        other.close()


def test_records_older_than_the_horizon_are_not_restored(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], outbox: Outbox
) -> None:
    topic = kafka_topic(partitions=1)
    writer = ledger_on(topic, outbox, kafka_bootstrap)
    old = uuid.uuid4()
    writer.mark_imported(0, 1, [(old, [1])])
    outbox.flush()
    later = ledger_on(topic, outbox, kafka_bootstrap, clock=lambda: 10**10)  # far in the future
    try:
        restore_all(later, [0])
        assert not later.memory(0).is_imported(old.bytes)
    finally:
        later.close()


def test_the_last_batch_is_restored_whole_when_the_broker_under_reports_the_end(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], outbox: Outbox
) -> None:
    """tansu 0.6 answers ListOffsets(latest) with the base offset of the last record batch + 1.

    When a restore poll of RESTORE_POLL_RECORDS then ends right after that base offset, the rest of
    the batch (here: the imports of the last three runs) must still be read. Found by the fault run.
    """
    topic = kafka_topic(partitions=1)
    writer = ledger_on(topic, outbox, kafka_bootstrap)
    for _ in range(RESTORE_POLL_RECORDS - 1):
        writer.mark_imported(0, 1, [(uuid.uuid4(), [1])])
    outbox.flush()
    last = [uuid.uuid4() for _ in range(3)]
    for run in last:  # one produce batch (linger 5 ms): offsets 999-1001, "end" 1000 on tansu
        writer.mark_imported(0, 1, [(run, [2])])
    outbox.flush()
    reader = ledger_on(topic, outbox, kafka_bootstrap)
    try:
        restore_all(reader, [0])
        assert [reader.memory(0).is_imported(run.bytes) for run in last] == [True, True, True]
        assert reader.remembered() == RESTORE_POLL_RECORDS + 2
    finally:
        reader.close()

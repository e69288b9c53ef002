"""The group member: restore before consuming, pause while processing, rewind abandoned batches."""

from __future__ import annotations

import threading

import pytest

from labelstudio_ingest.consumer.errors import Rebalanced
from labelstudio_ingest.consumer.metrics import Metrics
from labelstudio_ingest.consumer.source import Source

from .fakes import FakeKafkaConsumer, FakeLedger

TOPIC = "in"


def member(logs: dict[int, list[bytes]]) -> tuple[Source, FakeKafkaConsumer, FakeLedger]:
    consumer = FakeKafkaConsumer(TOPIC, logs)
    ledger = FakeLedger()
    source = Source(consumer, TOPIC, ledger=ledger, metrics=Metrics())  # type: ignore[arg-type]
    source.subscribe()
    return source, consumer, ledger


def offsets(records: list[object]) -> list[tuple[int, int]]:
    return sorted((r.partition, r.offset) for r in records)  # type: ignore[attr-defined]


def first_batch(source: Source, consumer: FakeKafkaConsumer, partitions: list[int]) -> list[object]:
    consumer.script.append(("assign", partitions))
    assert source.poll_batch(100, 0.0, threading.Event()) == []  # assigned, paused until restored
    assert source.restoring == set(partitions)
    source.restore_step()
    return source.poll_batch(100, 0.0, threading.Event())


def test_partitions_are_consumed_only_after_their_ledger_is_restored() -> None:
    source, consumer, ledger = member({0: [b"a", b"b"], 1: [b"c"]})
    records = first_batch(source, consumer, [0, 1])
    assert offsets(records) == [(0, 0), (0, 1), (1, 0)]
    assert ledger.retained == {0, 1}


def test_a_batch_abandoned_in_a_rebalance_is_delivered_again_on_retained_partitions() -> None:
    source, consumer, _ = member({0: [b"a", b"b"], 1: [b"c", b"d"]})
    records = first_batch(source, consumer, [0, 1])
    generation = source.generation
    source.pause_all()
    consumer.script += [("revoke",)]
    with pytest.raises(Rebalanced):
        source.keepalive(generation)
    source.rewind(records)  # both partitions are revoked at this moment
    source.resume_ready()

    consumer.script += [("assign", [0])]  # partition 0 stays with us (position kept), 1 moves
    assert source.poll_batch(100, 0.0, threading.Event()) == []
    source.restore_step()
    again = source.poll_batch(100, 0.0, threading.Event())
    assert offsets(again) == [(0, 0), (0, 1)]


def test_rewind_of_an_assigned_partition_seeks_at_once() -> None:
    source, consumer, _ = member({0: [b"a", b"b", b"c"]})
    records = first_batch(source, consumer, [0])
    source.rewind(records[1:])
    assert offsets(source.poll_batch(100, 0.0, threading.Event())) == [(0, 1), (0, 2)]


def test_commits_need_the_batch_generation_and_skip_lost_partitions() -> None:
    source, consumer, _ = member({0: [b"a"], 1: [b"b"]})
    records = first_batch(source, consumer, [0, 1])
    generation = source.generation
    assert source.commit({(TOPIC, 0): 1, (TOPIC, 1): 1}, generation)
    assert consumer.committed == {0: 1, 1: 1}
    consumer.script += [("revoke",), ("assign", [1])]
    source.poll_batch(100, 0.0, threading.Event())
    assert not source.commit({(TOPIC, 1): 1}, generation)  # an old generation commits nothing
    assert source.commit({(TOPIC, 0): 5, (TOPIC, 1): 1}, source.generation)
    assert consumer.committed == {0: 1, 1: 1}  # partition 0 is no longer ours
    assert len(records) == 2


def test_paused_partitions_only_keep_the_membership() -> None:
    source, consumer, _ = member({0: [b"a", b"b"]})
    first_batch(source, consumer, [0])
    consumer.logs[0].append(b"c")
    source.pause_all()
    source.keepalive(source.generation)  # polls, fetches nothing
    source.wait(0.01, source.generation)
    source.resume_ready()
    assert offsets(source.poll_batch(100, 0.0, threading.Event())) == [(0, 2)]

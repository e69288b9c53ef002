"""How far ``dlq`` reads a partition, against a scripted stand-in for kafka-python's consumer.

The real-broker side (tansu's short end offset, replay through a consumer) is in
tests/integration/test_dlq.py; here a log that grows while it is read shows the target never moves.
"""

from __future__ import annotations

from itertools import islice
from types import SimpleNamespace
from typing import Any

from kafka import TopicPartition

from labelstudio_ingest.consumer.dlq_kafka import _read

TOPIC = "in.dlq"


class GrowingLog:
    """One partition per list of offsets; ``poll`` hands out ``per_poll`` records and then grows the log.

    Like tansu 0.6, ``end_offsets`` answers the last batch's base offset + 1 (here: 1, one batch from
    0), while each fetch reports the true high watermark at the time of that fetch.
    """

    def __init__(self, sizes: dict[int, int], *, per_poll: int, grow_by: int) -> None:
        self.sizes = dict(sizes)
        self.per_poll, self.grow_by = per_poll, grow_by
        self.positions: dict[TopicPartition, int] = {}
        self.highwaters: dict[TopicPartition, int] = {}
        self.paused: set[TopicPartition] = set()
        self.polls = 0

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(self.sizes) if topic == TOPIC else set()

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.positions = dict.fromkeys(partitions, 0)

    def beginning_offsets(self, partitions: list[TopicPartition], **_: Any) -> dict[TopicPartition, int]:
        return dict.fromkeys(partitions, 0)

    def end_offsets(self, partitions: list[TopicPartition], **_: Any) -> dict[TopicPartition, int]:
        return {tp: min(1, self.sizes[tp.partition]) for tp in partitions}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    def poll(self, **_: Any) -> dict[TopicPartition, list[Any]]:
        self.polls += 1
        out: dict[TopicPartition, list[Any]] = {}
        for tp, position in self.positions.items():
            if tp in self.paused:
                continue
            self.highwaters[tp] = self.sizes[tp.partition]
            records = [self.record(tp, o) for o in range(position, self.highwaters[tp])][: self.per_poll]
            if records:
                out[tp] = records
                self.positions[tp] = records[-1].offset + 1
        for p in self.sizes:  # e.g. replayed records failing again, written while the read goes on
            self.sizes[p] += self.grow_by if self.sizes[p] else 0
        return out

    @staticmethod
    def record(tp: TopicPartition, offset: int) -> Any:
        return SimpleNamespace(
            topic=tp.topic,
            partition=tp.partition,
            offset=offset,
            key=b"k",
            value=b"v",
            headers=[],
            timestamp=0,
        )

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.highwaters.get(tp)

    def position(self, tp: TopicPartition, **_: Any) -> int:
        return self.positions[tp]

    def pause(self, tp: TopicPartition) -> None:
        self.paused.add(tp)


def test_reads_to_the_first_fetchs_high_watermark_and_never_further() -> None:
    log = GrowingLog({0: 6, 1: 0, 2: 4}, per_poll=2, grow_by=3)
    reader = _read(log, TOPIC, timeout_ms=1_000)  # type: ignore[arg-type]
    read = [(x.partition, x.offset) for x in islice(reader, 100)]  # a reader chasing the end never stops
    assert sorted(read) == [(0, o) for o in range(6)] + [(2, o) for o in range(4)]
    assert log.sizes[0] > 6  # the log did grow while it was read
    assert log.polls == 3


def test_a_missing_topic_reads_as_empty() -> None:
    assert list(_read(GrowingLog({}, per_poll=1, grow_by=0), TOPIC, timeout_ms=1_000)) == []  # type: ignore[arg-type]

"""A member sends a request only while the group has confirmed it lately (Source.confirm_membership).

The fake coordinator mimics what kafka-python 3 shows of a member frozen past its session timeout:
the last heartbeat answer is old and the coordinator may be marked dead, while the revoke callback
comes only from a later ``poll()``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from labelstudio_ingest.consumer.errors import Rebalanced
from labelstudio_ingest.consumer.metrics import Metrics
from labelstudio_ingest.consumer.source import Source

from .fakes import FakeKafkaConsumer, FakeLedger

TOPIC = "in"
SESSION_MS = 6_000


@dataclass
class FakeHeartbeat:
    last_receive: float = field(default_factory=time.monotonic)
    last_reset: float = field(default_factory=time.monotonic)


@dataclass
class FakeCoordinator:
    heartbeat: FakeHeartbeat = field(default_factory=FakeHeartbeat)
    dead: bool = False
    rejoin: bool = False

    def stable(self) -> bool:
        return not self.rejoin

    def need_rejoin(self) -> bool:
        return self.rejoin

    def coordinator_unknown(self) -> bool:
        return self.dead


class GroupMember(FakeKafkaConsumer):
    """A fake consumer with a coordinator; ``on_poll`` runs in every ``poll()`` (the group acting)."""

    def __init__(self) -> None:
        super().__init__(TOPIC, {0: [b"a"]})
        self.config = {"session_timeout_ms": SESSION_MS}
        self._coordinator = FakeCoordinator()
        self.polls = 0
        self.on_poll: Any = lambda: None

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, Any]:
        self.polls += 1
        self.on_poll()
        return super().poll(timeout_ms, max_records)


def assigned_member() -> tuple[Source, GroupMember]:
    consumer = GroupMember()
    source = Source(consumer, TOPIC, ledger=FakeLedger(), metrics=Metrics())  # type: ignore[arg-type]
    source.subscribe()
    consumer.script.append(("assign", [0]))
    consumer.poll()
    return source, consumer


def frozen(consumer: GroupMember, seconds: float) -> None:
    """What the member sees after being stopped for ``seconds``: no heartbeat answered since."""
    long_ago = time.monotonic() - seconds
    consumer._coordinator.heartbeat.last_receive = long_ago
    consumer._coordinator.heartbeat.last_reset = time.monotonic()  # a rediscovered coordinator resets it
    source_joined_long_ago(consumer, long_ago)


def source_joined_long_ago(consumer: GroupMember, at: float) -> None:
    consumer.listener._source._joined_at = at


def test_a_member_confirmed_lately_sends_without_polling() -> None:
    source, consumer = assigned_member()
    polls = consumer.polls
    source.confirm_membership(source.generation)
    assert consumer.polls == polls


def test_a_member_frozen_past_its_session_that_loses_its_partitions_sends_nothing() -> None:
    source, consumer = assigned_member()
    generation = source.generation
    frozen(consumer, 10)
    consumer._coordinator.dead = True
    consumer.on_poll = lambda: consumer.script.append(("revoke",))  # the rejoin revokes
    with pytest.raises(Rebalanced):
        source.confirm_membership(generation)


def test_a_member_frozen_briefly_whose_heartbeat_is_answered_again_goes_on() -> None:
    source, consumer = assigned_member()
    generation = source.generation
    frozen(consumer, 4)  # past half the session timeout, not past the session

    def answered() -> None:
        consumer._coordinator.heartbeat.last_receive = time.monotonic()

    consumer.on_poll = answered
    source.confirm_membership(generation)
    assert source.generation == generation


def test_a_pending_rejoin_is_not_a_confirmation() -> None:
    source, consumer = assigned_member()
    consumer._coordinator.rejoin = True
    consumer.on_poll = lambda: consumer.script.append(("revoke",))
    with pytest.raises(Rebalanced):
        source.confirm_membership(source.generation)

"""Fixtures of the producer tests (helpers live in ``support.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from labelstudio_ingest.consumer import embedded
from labelstudio_ingest.consumer.embedded import free_port
from labelstudio_ingest.producer import LabelStudioCallbackHandler


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Callable[[], embedded.Broker]]:
    """Make brokers of this test's own (not started yet), stopped after the test."""
    made: list[embedded.Broker] = []

    def make() -> embedded.Broker:
        broker = embedded.broker(tmp_path)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.stop()


@pytest.fixture(params=["process", "thread"])
def sender(request: pytest.FixtureRequest) -> str:
    """Where ``make_handler``'s handlers run kafka-python: every test using it runs with both."""
    return str(request.param)


@pytest.fixture
def make_handler(sender: str) -> Iterator[Callable[..., LabelStudioCallbackHandler]]:
    """Make handlers that are closed (without waiting) after the test, with ``sender`` unless the
    test says otherwise (or gives its own ``producer=``, which only a thread can use)."""
    made: list[LabelStudioCallbackHandler] = []

    def make(**kwargs: object) -> LabelStudioCallbackHandler:
        if "producer" not in kwargs:
            kwargs.setdefault("sender", sender)
        handler = LabelStudioCallbackHandler(**kwargs)  # type: ignore[arg-type]
        made.append(handler)
        return handler

    yield make
    for handler in made:
        handler.close(0)


@pytest.fixture
def handlers() -> Iterator[Callable[..., LabelStudioCallbackHandler]]:
    """Make chat-mode handlers with the thread sender, closed (without waiting) after the test."""
    made: list[LabelStudioCallbackHandler] = []

    def make(**options: Any) -> LabelStudioCallbackHandler:
        handler = LabelStudioCallbackHandler(sender="thread", mode="chat", **options)
        made.append(handler)
        return handler

    yield make
    for handler in made:
        handler.close(0)


@pytest.fixture
def offline_bootstrap() -> str:
    """A bootstrap address where no broker listens."""
    return f"127.0.0.1:{free_port()}"

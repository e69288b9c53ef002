"""Fixtures of the deploy tests that need a running consumer: a rig on a fresh 2-partition topic."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.consumer.runner import ConsumerProcess, Publisher, Rig


@pytest.fixture
def rig(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic: Callable[..., str], label_studio: Any, ls_client: Any
) -> Iterator[Rig]:
    publisher = Publisher(kafka_bootstrap)
    yield Rig(tmp_path, kafka_bootstrap, label_studio, ls_client, publisher, kafka_topic(partitions=2))
    publisher.close()


@pytest.fixture
def consumer(rig: Rig) -> Iterator[ConsumerProcess]:
    process = rig.consumer()
    yield process
    process.kill()

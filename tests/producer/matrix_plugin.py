"""The session broker for ``make test-matrix``, where only the producer and local extras are installed.

The full suite gets ``kafka_bootstrap`` and ``kafka_topic`` from ``tests/harness.py`` (which also needs
Label Studio's SDK); the matrix runs ``pytest --confcutdir tests/producer -p tests.producer.matrix_plugin``
so that only these, the same fixtures on the same embedded broker, are loaded.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from labelstudio_ingest.consumer import embedded


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``$KAFKA_BOOTSTRAP_SERVERS``, or a fresh in-memory tansu for the session."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    with tempfile.TemporaryDirectory(prefix="lsi-matrix-") as workdir:
        broker = embedded.start_broker(Path(workdir))
        try:
            yield broker.bootstrap
        finally:
            broker.stop()


@pytest.fixture
def kafka_topic(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """A factory ``new_topic(partitions=1) -> name`` of topics that no other test uses."""
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="test-matrix")

    def new_topic(partitions: int = 1) -> str:
        name = f"test.matrix.{uuid.uuid4().hex[:8]}"
        admin.create_topics(
            {name: {"num_partitions": partitions, "replication_factor": 1, "configs": {}}},
            wait_for_metadata=True,
        )
        return name

    yield new_topic
    admin.close()

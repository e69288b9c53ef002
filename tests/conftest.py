"""Session-wide fixtures (real Kafka and Label Studio from ``tests/harness.py``) and the consumer rig."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Helper modules with asserts, imported here before pytest would load them as plugins.
pytest.register_assert_rewrite("tests.harness", "tests.consumer.runner")

from label_studio_sdk.client import LabelStudio  # noqa: E402

from tests.consumer.runner import ConsumerProcess, Publisher, Rig  # noqa: E402
from tests.harness import LabelStudioServer  # noqa: E402

pytest_plugins = ["tests.harness"]


@pytest.fixture
def rig_partitions() -> int:
    """Partitions of the input topic of :func:`rig`; a test module overrides this fixture to change it."""
    return 4


@pytest.fixture
def rig(  # noqa: PLR0917 (fixtures arrive as arguments)
    tmp_path: Path,
    kafka_bootstrap: str,
    kafka_topic: Callable[..., str],
    label_studio: LabelStudioServer,
    ls_client: LabelStudio,
    rig_partitions: int,
) -> Iterator[Rig]:
    """A fresh input topic, a publisher and the session's servers, to run real consumers against."""
    publisher = Publisher(kafka_bootstrap)
    topic = kafka_topic(partitions=rig_partitions)
    yield Rig(tmp_path, kafka_bootstrap, label_studio, ls_client, publisher, topic)
    publisher.close()


@pytest.fixture
def consumer(rig: Rig) -> Iterator[ConsumerProcess]:
    """One ``labelstudio-ingest consume`` process on the rig, killed after the test."""
    process = rig.consumer()
    yield process
    process.kill()

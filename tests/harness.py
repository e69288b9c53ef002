"""Real servers for integration tests: a tansu Kafka broker and Label Studio, one of each per session.

The servers come from :mod:`labelstudio_ingest.consumer.embedded`, the launcher ``make demo`` uses too:
both bind 127.0.0.1 on free ports, run in their own process group with output in a log file, and are
stopped (and their temporary directories removed) when the session ends, also after a failure or
Ctrl-C. Label Studio runs on PostgreSQL as in production (``LSI_TEST_LABEL_STUDIO_DB=sqlite``: on
SQLite, which starts quicker). ``KAFKA_BOOTSTRAP_SERVERS`` or ``LABEL_STUDIO_URL`` +
``LABEL_STUDIO_API_KEY`` point the tests at servers that are already running instead.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import pytest
from kafka import KafkaAdminClient
from label_studio_sdk.client import LabelStudio

from labelstudio_ingest.consumer import embedded
from labelstudio_ingest.consumer.embedded import ServerProcess, free_port, wait_until

__all__ = [
    "KAFKA_TEST_CONSUMER_DEFAULTS",
    "REPO_ROOT",
    "LabelStudioServer",
    "ServerProcess",
    "free_port",
    "wait_until",
]

REPO_ROOT: Final = Path(__file__).resolve().parent.parent

KAFKA_TEST_CONSUMER_DEFAULTS: Final[Mapping[str, Any]] = {
    "max_poll_interval_ms": 5000,
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 1000,
    "request_timeout_ms": 15000,
}
"""Short group timeouts for ``KafkaConsumer(**KAFKA_TEST_CONSUMER_DEFAULTS, ...)`` against tansu.

tansu answers a JoinGroup after about ``session_timeout_ms / 2`` (3 s here; a second member joining
takes 4-7 s), and hands a crashed member's partitions over after about ``session_timeout_ms`` plus a
join (about 11 s here). The kafka-python defaults (45 s session, 300 s poll interval) make that minutes.
Poll each member of a group from its own thread: polling two members in turn from one thread made
tansu miss rebalances and left the group stuck.
"""


@pytest.fixture(scope="session")
def server_tmp_dir() -> Iterator[Path]:
    """A temporary directory for the session's servers, removed at the end of the session."""
    path = Path(tempfile.mkdtemp(prefix="lsi-test-servers-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------------------------------------- Kafka


@pytest.fixture(scope="session")
def kafka_bootstrap(server_tmp_dir: Path) -> Iterator[str]:
    """``host:port`` of a Kafka-protocol broker: ``$KAFKA_BOOTSTRAP_SERVERS``, or a fresh in-memory tansu."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    broker = embedded.start_broker(server_tmp_dir)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    """A ``KafkaAdminClient`` on the session broker."""
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="test-harness")
    try:
        yield admin
    finally:
        admin.close()


@pytest.fixture
def kafka_topic(kafka_admin: KafkaAdminClient, request: pytest.FixtureRequest) -> Callable[..., str]:
    """A factory ``new_topic(partitions=1, **configs) -> name`` of topics that no other test uses.

    Config names take underscores for dots: ``new_topic(2, retention_ms="60000")``. The call returns once
    every partition has a leader.
    """
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:60].strip("-.")

    def new_topic(partitions: int = 1, **configs: str) -> str:
        name = f"test.{stem}.{uuid.uuid4().hex[:8]}"
        options = {k.replace("_", "."): str(v) for k, v in configs.items()}
        kafka_admin.create_topics(
            {name: {"num_partitions": partitions, "replication_factor": 1, "configs": options}},
            wait_for_metadata=True,
        )
        return name

    return new_topic


# ---------------------------------------------------------------------------------------- Label Studio


class LabelStudioServer(embedded.LabelStudio):
    """The session's Label Studio; ``stop()``/``start()`` (same port, same data) inject outages."""

    def stop(self) -> None:
        """Stop the server; the data directory stays for ``start()``."""
        self._own_process().stop()

    def start(self) -> None:
        """Start the server again (after ``stop()``) and wait until the API answers."""
        self._own_process().start(self.is_up, embedded.LABEL_STUDIO_START_TIMEOUT_S)

    def _own_process(self) -> ServerProcess:
        if self.process is None:
            pytest.skip("needs a Label Studio started by the tests, not $LABEL_STUDIO_URL")
        return self.process


LABEL_STUDIO_DB_ENV: Final = "LSI_TEST_LABEL_STUDIO_DB"
"""Database of the started Label Studio: ``postgresql`` (default, as in production) or ``sqlite``."""


def label_studio_database() -> embedded.Database:
    """The database of the Label Studio the harness starts, from ``$LSI_TEST_LABEL_STUDIO_DB``."""
    value = os.environ.get(LABEL_STUDIO_DB_ENV, "postgresql").strip().lower() or "postgresql"
    if value not in ("postgresql", "sqlite"):
        pytest.fail(f"{LABEL_STUDIO_DB_ENV} must be postgresql or sqlite, not {value!r}", pytrace=False)
    return "sqlite" if value == "sqlite" else "postgresql"


@pytest.fixture(scope="session")
def label_studio(server_tmp_dir: Path) -> Iterator[LabelStudioServer]:
    """A Label Studio: ``$LABEL_STUDIO_URL`` + ``$LABEL_STUDIO_API_KEY``, or one started from its own venv.

    The one started here runs on PostgreSQL (a server of its own, up for the whole session, also while
    a test stops Label Studio), or on SQLite with ``LSI_TEST_LABEL_STUDIO_DB=sqlite``.
    """
    url, api_key = os.environ.get("LABEL_STUDIO_URL"), os.environ.get("LABEL_STUDIO_API_KEY")
    if url and api_key:
        yield LabelStudioServer(url.rstrip("/"), api_key, username="", password="")
        return
    executable = embedded.find_label_studio(REPO_ROOT)
    if executable is None:
        pytest.fail(
            "Label Studio is not installed: run `make test` (it creates .venv-ls), set LABEL_STUDIO_BIN, "
            "or point LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY at a running server.",
            pytrace=False,
        )
    started = embedded.start_label_studio(
        server_tmp_dir / "label-studio", executable=executable, database=label_studio_database()
    )
    server = LabelStudioServer(
        started.url, started.api_key, started.username, started.password, started.process, started.database
    )
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(autouse=True)
def _label_studio_back_up(request: pytest.FixtureRequest) -> Iterator[None]:
    """Restart the session's Label Studio after a test that stopped it and maybe failed before restarting."""
    yield
    if "label_studio" in request.fixturenames:
        server: LabelStudioServer = request.getfixturevalue("label_studio")
        if server.process is not None and not server.process.running:
            server.start()


@pytest.fixture
def ls_client(label_studio: LabelStudioServer) -> LabelStudio:
    """A Label Studio SDK client for the session's server."""
    return LabelStudio(base_url=label_studio.url, api_key=label_studio.api_key)  # type: ignore[no-untyped-call]

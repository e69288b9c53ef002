"""Servers for the consumer benchmark: the ones already running, or the embedded local stack.

``KAFKA_BOOTSTRAP_SERVERS`` and ``LABEL_STUDIO_URL`` + ``LABEL_STUDIO_API_KEY`` point at running
servers; otherwise ``labelstudio_ingest.consumer.embedded`` starts a tansu broker and a Label Studio
(``LABEL_STUDIO_BIN``, ``.venv-ls`` or ``label-studio`` on PATH) on free loopback ports in a temporary
directory, stopped at the end. That Label Studio runs on PostgreSQL (a server of its own, as in
production) or on SQLite, from one process or from several gunicorn workers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from labelstudio_ingest.consumer.embedded import (
    Database,
    find_label_studio,
    free_port,
    start_broker,
    start_label_studio,
)

REPO_ROOT = Path(__file__).resolve().parent.parent

__all__ = ["Database", "Restartable", "Servers", "free_port", "servers"]


class Restartable(Protocol):
    """A Label Studio a benchmark may stop and start again (same port, same data)."""

    def stop(self) -> None: ...
    def start(self) -> None: ...


@dataclass(frozen=True)
class Servers:
    """Where the benchmark's broker and Label Studio answer."""

    bootstrap: str
    ls_url: str
    ls_api_key: str
    label_studio: Restartable | None = None
    """The Label Studio started here (the fault run stops and starts it); None for a running one."""
    pids: Mapping[str, int] = field(default_factory=dict)
    """Process ids of the servers started here, by name (``broker``, ``label studio``, ``postgres``)."""


@contextlib.contextmanager
def servers(database: Database = "postgresql", workers: int = 1) -> Iterator[Servers]:
    """The benchmark's servers for the duration of the ``with`` block.

    ``database`` and ``workers`` (gunicorn worker processes; 1: ``label-studio start``) shape the
    Label Studio started here; a running one (``LABEL_STUDIO_URL``) is taken as it is.
    """
    workdir = Path(tempfile.mkdtemp(prefix="lsi-bench-consumer-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        pids: dict[str, int] = {}
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            broker = start_broker(workdir)
            stack.callback(broker.stop)
            bootstrap = broker.bootstrap
            pids["broker"] = broker.process.pid or 0
        ls_url, api_key = os.environ.get("LABEL_STUDIO_URL"), os.environ.get("LABEL_STUDIO_API_KEY")
        if ls_url and api_key:
            yield Servers(bootstrap, ls_url.rstrip("/"), api_key)
            return
        label_studio = start_label_studio(
            workdir / "label-studio",
            executable=find_label_studio(REPO_ROOT),
            database=database,
            workers=workers,
        )
        stack.callback(label_studio.close)
        if label_studio.process is not None:
            pids["label studio"] = label_studio.process.pid or 0
        if label_studio.database is not None:
            pids["postgres"] = label_studio.database.process.pid or 0
        yield Servers(bootstrap, label_studio.url.rstrip("/"), label_studio.api_key, label_studio, pids)

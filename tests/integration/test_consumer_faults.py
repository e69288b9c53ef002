"""Faults against real servers: kill -9 mid-batch, Label Studio down mid-stream, SIGTERM."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections import Counter
from typing import Any

import pytest

from labelstudio_ingest.schemas import Target
from tests.consumer.runner import (
    Rig,
    eventually,
    project_titled,
    prompt_event,
    run_ids_of,
)

pytestmark = pytest.mark.integration


def exactly_once(ls_client: Any, project_id: int, expected: set[str]) -> bool:
    """True once the project holds every expected run exactly once; fails on any doubled run."""
    counts = Counter(run_ids_of(ls_client, project_id))
    doubled = {run for run, n in counts.items() if n > 1}
    assert not doubled, f"runs imported twice: {sorted(doubled)[:5]}"
    return set(counts) == expected


@pytest.mark.parametrize(
    "crash_after",
    [
        pytest.param("pending", marks=pytest.mark.slow),
        "import",  # between import and commit: the case the issue names
        pytest.param("ledger", marks=pytest.mark.slow),
    ],
)
def test_kill_9_mid_batch_loses_and_doubles_nothing(rig: Rig, crash_after: str) -> None:
    publisher, topic, ls_client = rig.publisher, rig.topic, rig.ls_client
    target = Target(project_name=f"it-kill-{crash_after}-{uuid.uuid4().hex[:8]}")
    events = [prompt_event(target=target) for _ in range(300)]
    publisher.events(topic, events)
    consumer = rig.consumer(INGEST_BATCH_SIZE="50")
    try:
        consumer.start(INGEST_FAULT_CRASH_AFTER=crash_after, INGEST_FAULT_CRASH_BATCH="2")
        assert consumer.wait_exit(timeout=120) == -signal.SIGKILL

        project = project_titled(ls_client, target.project_name or "")
        assert project is not None
        imported_before = len(run_ids_of(ls_client, project.id))

        consumer.start().wait_ready()
        expected = {str(e.run_id) for e in events}
        eventually(
            lambda: exactly_once(ls_client, project.id, expected), timeout=120, message="all runs once"
        )
        if crash_after in {"pending", "import"}:
            # the crashed batch's runs were uncertain: the restarted consumer asked Label Studio
            assert consumer.metric("ingest_uncertain_checks_total") > 0
        if crash_after == "import":
            assert imported_before > 50  # batch 2 had reached Label Studio before the kill
            assert consumer.metric("ingest_duplicates_skipped_total", source="label_studio") > 0
        assert consumer.terminate() == 0
    finally:
        consumer.kill()


def test_label_studio_stopped_and_restarted_mid_stream(rig: Rig) -> None:
    publisher, topic, ls_client, label_studio = rig.publisher, rig.topic, rig.ls_client, rig.label_studio
    target = Target(project_name=f"it-outage-{uuid.uuid4().hex[:8]}")
    first = [prompt_event(target=target) for _ in range(100)]
    during = [prompt_event(target=target) for _ in range(200)]
    publisher.events(topic, first)
    consumer = rig.consumer(INGEST_BATCH_SIZE="20")
    stop_publishing = threading.Event()

    def publish_slowly() -> None:
        for event in during:
            if stop_publishing.is_set():
                return
            publisher.events(topic, [event])
            time.sleep(0.02)

    try:
        consumer.start().wait_ready()
        project = eventually(lambda: project_titled(ls_client, target.project_name or ""), message="project")
        eventually(lambda: len(run_ids_of(ls_client, project.id)) >= 20, message="first tasks")

        feeder = threading.Thread(target=publish_slowly)
        feeder.start()
        label_studio.stop()
        eventually(lambda: consumer.metric("ingest_paused") == 1, timeout=60, message="partitions paused")
        eventually(lambda: not consumer.is_ready(), timeout=30, message="not ready during the outage")
        assert consumer.metric("ingest_label_studio_errors_total") > 0
        feeder.join(timeout=120)
        assert consumer.running()  # it waits, it does not die

        label_studio.start()
        expected = {str(e.run_id) for e in first + during}
        eventually(
            lambda: exactly_once(ls_client, project.id, expected), timeout=180, message="all runs once"
        )
        eventually(lambda: consumer.metric("ingest_paused") == 0, message="consuming again")
        assert consumer.metric("ingest_label_studio_retries_total") > 0
        eventually(consumer.is_ready, timeout=30, message="ready again")
        assert consumer.terminate() == 0
    finally:
        stop_publishing.set()
        consumer.kill()


def test_sigterm_finishes_the_batch_commits_and_exits_zero(rig: Rig) -> None:
    publisher, topic, ls_client = rig.publisher, rig.topic, rig.ls_client
    target = Target(project_name=f"it-sigterm-{uuid.uuid4().hex[:8]}")
    events = [prompt_event(target=target) for _ in range(400)]
    publisher.events(topic, events)
    consumer = rig.consumer(INGEST_BATCH_SIZE="100")
    try:
        consumer.start().wait_ready()
        project = eventually(lambda: project_titled(ls_client, target.project_name or ""), message="project")
        eventually(lambda: run_ids_of(ls_client, project.id), message="a first batch")
        assert consumer.terminate() == 0
        messages = [entry["msg"] for entry in consumer.log_entries()]
        assert "stopping" in messages
        assert messages[-1] == "stopped"

        # whatever was imported was committed: a new member redoes nothing and finishes the rest
        consumer.start().wait_ready()
        expected = {str(e.run_id) for e in events}
        eventually(
            lambda: exactly_once(ls_client, project.id, expected), timeout=120, message="all runs once"
        )
        assert consumer.metric("ingest_uncertain_checks_total") == 0
        assert consumer.terminate() == 0
    finally:
        consumer.kill()

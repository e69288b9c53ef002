"""Two replicas in one group: partitions split, new projects created concurrently, hand-over on exit."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest
from label_studio_sdk.core.api_error import ApiError

from labelstudio_ingest.schemas import Target
from tests.consumer.runner import Rig, eventually, prompt_event, run_ids_of

pytestmark = pytest.mark.integration

PROJECTS = 6
HTTP_NOT_FOUND = 404


def projects_titled(client: Any, titles: set[str]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for project in client.projects.list(page_size=1000):
        if project.title in titles:
            found.setdefault(project.title, []).append(project.id)
    return found


def test_two_replicas_split_partitions_and_create_each_project_once(rig: Rig) -> None:
    publisher, topic, ls_client = rig.publisher, rig.topic, rig.ls_client
    prefix = f"it-rep-{uuid.uuid4().hex[:8]}"
    titles = {f"{prefix}-{i}" for i in range(PROJECTS)}
    replicas = [rig.consumer(f"replica-{i}", INGEST_BATCH_SIZE="50") for i in range(2)]
    try:
        for replica in replicas:
            replica.start()
        for replica in replicas:
            replica.wait_ready()
        eventually(
            lambda: all(r.metric("ingest_partitions_assigned") == 2 for r in replicas),
            timeout=60,
            message="a 2/2 split",
        )

        # every title appears on every partition, so both replicas race to create each project
        first = [prompt_event(target=Target(project_name=t)) for t in sorted(titles) for _ in range(40)]
        publisher.events(topic, first)
        expected = {str(e.run_id) for e in first}

        def all_imported_once() -> bool:
            found = projects_titled(ls_client, titles)
            if set(found) != titles:
                return False
            try:
                runs = Counter(r for ids in found.values() for pid in ids for r in run_ids_of(ls_client, pid))
            except ApiError as exc:  # a racing replica deleted its empty duplicate between the two calls
                if exc.status_code == HTTP_NOT_FOUND:
                    return False
                raise
            assert not [r for r, n in runs.items() if n > 1], "a run was imported twice"
            return set(runs) == expected

        eventually(all_imported_once, timeout=180, message="every run once")
        eventually(lambda: all(len(ids) == 1 for ids in projects_titled(ls_client, titles).values()))
        assert all(r.metric("ingest_tasks_imported_total") > 0 for r in replicas)

        # one replica leaves mid-stream; the other takes its partitions and finishes
        second = [prompt_event(target=Target(project_name=t)) for t in sorted(titles) for _ in range(40)]
        publisher.events(topic, second[: len(second) // 2])
        assert replicas[0].terminate() == 0
        publisher.events(topic, second[len(second) // 2 :])
        expected |= {str(e.run_id) for e in second}
        eventually(
            lambda: replicas[1].metric("ingest_partitions_assigned") == 4, timeout=60, message="hand-over"
        )
        eventually(all_imported_once, timeout=180, message="every run once after the hand-over")
        assert replicas[1].terminate() == 0
    finally:
        for replica in replicas:
            replica.kill()


def test_a_replica_killed_mid_batch_is_covered_by_the_other(rig: Rig) -> None:
    publisher, topic, ls_client = rig.publisher, rig.topic, rig.ls_client
    target = Target(project_name=f"it-repkill-{uuid.uuid4().hex[:8]}")
    survivor = rig.consumer("survivor", INGEST_BATCH_SIZE="25")
    victim = rig.consumer("victim", INGEST_BATCH_SIZE="25")
    try:
        survivor.start().wait_ready()
        victim.start(INGEST_FAULT_CRASH_AFTER="import", INGEST_FAULT_CRASH_BATCH="3")
        eventually(
            lambda: survivor.metric("ingest_partitions_assigned") == 2, timeout=60, message="a 2/2 split"
        )
        events = [prompt_event(target=target) for _ in range(400)]
        publisher.events(topic, events)
        assert victim.wait_exit(timeout=120) < 0  # SIGKILLed itself between import and commit

        expected = {str(e.run_id) for e in events}

        def all_once() -> bool:
            found = projects_titled(ls_client, {target.project_name or ""})
            if not found:
                return False
            (project_id,) = found[target.project_name or ""]
            runs = Counter(run_ids_of(ls_client, project_id))
            assert not [r for r, n in runs.items() if n > 1], "a run was imported twice"
            return set(runs) == expected

        eventually(all_once, timeout=180, message="every run once after the kill")
        assert survivor.metric("ingest_partitions_assigned") == 4
        assert survivor.metric("ingest_uncertain_checks_total") > 0
        assert survivor.terminate() == 0
    finally:
        survivor.kill()
        victim.kill()

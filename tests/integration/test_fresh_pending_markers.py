"""Every import request is preceded by a fresh ``pending`` marker, so a member killed inside any of
them — a retry after a 5xx and its wait, a half of a split request, the first import after a
restore — leaves a marker whose time the next owner waits out before it asks Label Studio.

Without it the next owner finds only the marker of an earlier request, whose wait has already
passed: it asks at once, is told "nothing" while the killed member's request is still held, and
imports; the held request then doubles every run. A :class:`ScriptedProxy` in front of the real
Label Studio fails, delays or holds the chosen imports; the held one is forwarded as soon as anyone
has asked Label Studio for tasks, or after ``HOLD_S``.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from labelstudio_ingest.schemas import Target
from tests.consumer.runner import ConsumerProcess, Rig, eventually, project_titled, prompt_event, run_ids_of
from tests.integration.scripted_proxy import Act, ScriptedProxy, is_import

pytestmark = pytest.mark.integration

IMPORT_TIMEOUT_S = 20
"""Longer than a killed member's hand-over on tansu (8-11 s with the test session timeout)."""
HOLD_S = 15.0
"""Longest hold of the request the member is killed in: past the moment the next owner would ask
without a fresh marker, before the moment it asks with one (import timeout + 2 s after it)."""
SETTINGS = {
    "INGEST_IMPORT_TIMEOUT_S": str(IMPORT_TIMEOUT_S),
    "INGEST_MAX_POLL_INTERVAL_MS": str((IMPORT_TIMEOUT_S + 10) * 1000),
}


@pytest.fixture
def rig_partitions() -> int:
    return 1  # one owner at a time: the killed member's successor takes every run


def held() -> Act:
    return Act(is_import, hold_s=HOLD_S)


@contextmanager
def play(rig: Rig, acts: list[Act], processes: list[ConsumerProcess]) -> Iterator[ScriptedProxy]:
    proxy = ScriptedProxy(rig.label_studio.url, acts).start()
    try:
        yield proxy
    finally:
        for process in processes:
            process.kill()
        proxy.close()


def publish(rig: Rig, count: int) -> tuple[Target, set[str]]:
    target = Target(project_name=f"it-fresh-marker-{uuid.uuid4().hex[:8]}")
    events = [prompt_event(target=target) for _ in range(count)]
    rig.publisher.events(rig.topic, events)
    return target, {str(e.run_id) for e in events}


def successor_finishes(rig: Rig, proxy: ScriptedProxy, hold: Act, target: Target, expected: set[str]) -> None:
    """Start the next owner; every run ends up exactly once, and it asked only after the held import."""
    successor = rig.consumer("successor", LABEL_STUDIO_URL=proxy.url, **SETTINGS).start()
    try:
        assert hold.forwarded.wait(120), "the held import was never forwarded"
        project = project_titled(rig.ls_client, target.project_name or "")
        assert project is not None
        eventually(
            lambda: (
                successor.metric("ingest_runs_imported_total")
                + successor.metric("ingest_duplicates_skipped_total", source="label_studio")
                >= len(expected)
                if successor.get("/metrics") is not None
                else False
            ),
            timeout=120,
            message="the next owner never finished its batch",
        )
        # the successor asked only after the import timeout had passed since the request it inherited
        first_question = min(at for at in proxy.lookups_at if at > hold.arrived_at)
        assert first_question - hold.arrived_at >= IMPORT_TIMEOUT_S
        counts = Counter(run_ids_of(rig.ls_client, project.id))
        assert counts == dict.fromkeys(expected, 1), f"runs imported twice: {counts}"
        assert hold.lookups_while_holding == 0  # nobody asked before the held request was applied
    finally:
        successor.kill()


def test_a_member_killed_in_its_retry_after_a_5xx_leaves_a_marker_the_next_owner_waits_out(rig: Rig) -> None:
    target, expected = publish(rig, 3)
    fail, hold = Act(is_import, status=500), held()
    first = rig.consumer("first", **SETTINGS)
    with play(rig, [fail, hold], [first]) as proxy:
        first.start(LABEL_STUDIO_URL=proxy.url)
        # 500, then the retry waits out its own marker (the 500 may have been applied), asks, imports
        assert hold.arrived.wait(120), first.log_text()
        first.kill()
        successor_finishes(rig, proxy, hold, target, expected)


def test_a_member_killed_in_a_half_of_a_split_import_leaves_a_marker_the_next_owner_waits_out(
    rig: Rig,
) -> None:
    target, expected = publish(rig, 4)
    slow_refusal, hold = Act(is_import, delay_s=10, status=400), held()  # a 4xx splits the request
    first = rig.consumer("first", **SETTINGS)
    with play(rig, [slow_refusal, hold], [first]) as proxy:
        first.start(LABEL_STUDIO_URL=proxy.url)
        assert hold.arrived.wait(120), first.log_text()  # the first half, 10 s after the first marker
        first.kill()
        successor_finishes(rig, proxy, hold, target, expected)


def test_a_member_killed_in_its_first_import_after_a_restore_leaves_a_marker_the_next_owner_waits_out(
    rig: Rig,
) -> None:
    target, expected = publish(rig, 3)
    hold = held()
    first = rig.consumer("first", INGEST_FAULT_CRASH_AFTER="pending", **SETTINGS)
    second = rig.consumer("second", **SETTINGS)
    with play(rig, [hold], [first, second]) as proxy:
        first.start(LABEL_STUDIO_URL=proxy.url)
        assert first.wait_exit(120) != 0  # SIGKILLed right after its marker, before any import
        second.start(LABEL_STUDIO_URL=proxy.url)  # restores, waits, asks ("nothing"), imports: held
        assert hold.arrived.wait(120), second.log_text()
        second.kill()
        successor_finishes(rig, proxy, hold, target, expected)

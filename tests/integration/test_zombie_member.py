"""A member frozen (SIGSTOP) longer than the session timeout sends no import when it wakes up.

Its partition moved to another member while it was frozen; kafka-python then marks the
coordinator dead without calling the revoke callback, so the old batch's next request would go
out. Every Label Studio request of a batch first confirms the membership (a successful heartbeat
within half the session timeout, a known coordinator, a stable group) and otherwise polls until
the group says whether the partitions are still ours — here, that they are not.

The frozen member is caught inside its project lookup by a :class:`ScriptedProxy` that holds the
request until the test releases it; its answer waits in the socket until the member is woken.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections import Counter

import pytest

from labelstudio_ingest.schemas import Target
from tests.consumer.runner import Rig, eventually, project_titled, prompt_event, run_ids_of
from tests.integration.scripted_proxy import Act, ScriptedProxy, is_project_lookup

pytestmark = pytest.mark.integration

ABANDONED = "the assignment changed during a batch"


@pytest.fixture
def rig_partitions() -> int:
    return 1


def test_a_member_woken_after_its_partition_moved_sends_no_import(rig: Rig) -> None:
    target = Target(project_name=f"it-zombie-{uuid.uuid4().hex[:8]}")
    events = [prompt_event(target=target) for _ in range(3)]
    expected = {str(e.run_id) for e in events}
    rig.publisher.events(rig.topic, events)

    lookup = Act(is_project_lookup, hold_s=300, release_on_lookup=False)
    proxy = ScriptedProxy(rig.label_studio.url, [lookup]).start()
    zombie = rig.consumer("zombie", LABEL_STUDIO_URL=proxy.url)
    successor = rig.consumer("successor")
    try:
        zombie.start()
        assert lookup.arrived.wait(120), zombie.log_text()
        assert zombie.proc is not None
        os.kill(zombie.proc.pid, signal.SIGSTOP)  # frozen inside its batch, its lookup unanswered

        successor.start()  # takes the partition once the frozen member's session has expired
        eventually(
            lambda: (
                successor.get("/metrics") is not None
                and successor.metric("ingest_runs_imported_total") >= len(events)
            ),
            timeout=120,
            message="the successor never imported the runs",
        )
        project = project_titled(rig.ls_client, target.project_name or "")
        assert project is not None

        lookup.release.set()  # the lookup is answered while the member is still frozen
        assert lookup.forwarded.wait(30)
        os.kill(zombie.proc.pid, signal.SIGCONT)
        eventually(
            lambda: ABANDONED in zombie.log_text() or len(run_ids_of(rig.ls_client, project.id)) > 3,
            timeout=60,
            message="the woken member neither abandoned its batch nor imported",
        )
        counts = Counter(run_ids_of(rig.ls_client, project.id))
        assert counts == dict.fromkeys(expected, 1), f"the woken member imported again: {counts}"
        assert zombie.running()
    finally:
        if zombie.proc is not None and zombie.running():
            os.kill(zombie.proc.pid, signal.SIGCONT)
        zombie.kill()
        successor.kill()
        proxy.close()

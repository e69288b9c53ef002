"""A member SIGKILLed inside its import request: Label Studio applies that request after the next
owner took over (docs/RELIABILITY.md, seed 8). The next owner must not ask Label Studio about the
uncertain runs before the request could have ended, or it finds nothing and imports them again.

A proxy between the consumers and the real Label Studio holds the first import request, forwards
it even though its client died, and lets it through as soon as anyone has asked Label Studio for
tasks (or after ``HOLD_S``). Without the wait, the next owner asks within the hold, is told
"nothing", imports, and the held request doubles every run; with it, the question comes after the
hold, and finds the runs.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator

import pytest

from labelstudio_ingest.schemas import Target
from tests.consumer.runner import ConsumerProcess, Rig, eventually, project_titled, prompt_event, run_ids_of
from tests.integration.ls_proxy import HoldingProxy

pytestmark = pytest.mark.integration

IMPORT_TIMEOUT_S = 20
"""Longer than a crashed member's hand-over on tansu (8-11 s with the test session timeout)."""
HOLD_S = 15.0
"""Longest hold of the first import: after the next owner would ask without the fix (about 11 s
after the kill; 8 s measured), before the import timeout (when it asks with the fix)."""


def metric(process: ConsumerProcess, name: str, **labels: str) -> float:
    """A metric of a process that may not serve /metrics yet (0 then)."""
    return process.metric(name, **labels) if process.get("/metrics") is not None else 0.0


@pytest.fixture
def proxy(rig: Rig) -> Iterator[HoldingProxy]:
    proxy = HoldingProxy(rig.label_studio.url, HOLD_S).start()
    yield proxy
    proxy.close()


def test_a_killed_members_late_import_is_not_doubled_by_the_next_owner(rig: Rig, proxy: HoldingProxy) -> None:
    target = Target(project_name=f"it-late-import-{uuid.uuid4().hex[:8]}")
    events = [prompt_event(target=target) for _ in range(3)]
    expected = {str(e.run_id) for e in events}
    rig.publisher.events(rig.topic, events)
    settings = {
        "LABEL_STUDIO_URL": proxy.url,
        "INGEST_IMPORT_TIMEOUT_S": str(IMPORT_TIMEOUT_S),
        "INGEST_MAX_POLL_INTERVAL_MS": str((IMPORT_TIMEOUT_S + 10) * 1000),
    }
    first = rig.consumer("first", **settings)
    second = rig.consumer("second", **settings)
    try:
        first.start()
        assert proxy.holding.wait(120), first.log_text()
        first.kill()  # SIGKILL while Label Studio has not seen the import yet
        second.start()

        # the next owner restores the ledger, finds the runs uncertain and waits, not an outage
        eventually(
            lambda: metric(second, "ingest_uncertain_waits_total") >= 1 or proxy.released.is_set(),
            timeout=120,
            message="the next owner never processed the batch",
        )
        if not proxy.released.is_set():
            assert second.is_ready(), second.get("/readyz")

        assert proxy.released.wait(120), "the held import was never forwarded"
        project = project_titled(rig.ls_client, target.project_name or "")
        assert project is not None
        eventually(
            lambda: metric(second, "ingest_uncertain_checks_total") >= len(events),
            timeout=120,
            message="the next owner never asked Label Studio",
        )
        eventually(  # the next owner's batch is done: every run imported by it or found in Label Studio
            lambda: (
                metric(second, "ingest_runs_imported_total")
                + metric(second, "ingest_duplicates_skipped_total", source="label_studio")
                >= len(events)
            ),
            timeout=120,
            message="the next owner never finished its batch",
        )
        assert set(run_ids_of(rig.ls_client, project.id)) == expected
        eventually(second.is_ready, timeout=60, message="the next owner is not ready")
        counts = Counter(run_ids_of(rig.ls_client, project.id))
        assert counts == dict.fromkeys(expected, 1), f"runs imported twice: {counts}"
        assert proxy.lookups_while_holding == 0  # nobody asked before the held request was applied

        assert second.metric("ingest_uncertain_waits_total") == 1
        assert second.metric("ingest_uncertain_wait_seconds_total") > 0
        assert second.metric("ingest_duplicates_skipped_total", source="label_studio") == len(events)
        assert second.metric("ingest_label_studio_errors_total") == 0
        assert second.metric("ingest_label_studio_retries_total") == 0
        waits = [e for e in second.log_entries() if str(e.get("msg")).startswith("uncertain runs too")]
        assert len(waits) == 1
        assert waits[0]["runs"] == len(events)
        assert second.terminate() == 0
    finally:
        first.kill()
        second.kill()

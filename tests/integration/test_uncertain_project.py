"""An uncertain run is looked up in the project its ``pending`` marker names, not where it routes now.

A member imports a run into project "X" and is killed before it records ``imported``; then the
project is renamed (or a dated title rolls over at midnight), so the run's target title now
resolves to a new project. The next owner must ask the project the import went to: asking the new
one finds nothing and imports the run a second time, in another project.
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from labelstudio_ingest.schemas import Target
from tests.consumer.runner import Rig, eventually, project_titled, prompt_event, run_ids_of

pytestmark = pytest.mark.integration


def test_a_run_whose_project_was_renamed_after_its_import_is_found_there_not_imported_again(rig: Rig) -> None:
    title = f"it-renamed-{uuid.uuid4().hex[:8]}"
    events = [prompt_event(target=Target(project_name=title)) for _ in range(3)]
    expected = {str(e.run_id) for e in events}
    rig.publisher.events(rig.topic, events)

    first = rig.consumer("first", INGEST_FAULT_CRASH_AFTER="import")
    second = rig.consumer("second")
    try:
        first.start()
        assert first.wait_exit(120) != 0, first.log_text()  # imported, killed before `imported` was written
        imported_into = project_titled(rig.ls_client, title)
        assert imported_into is not None
        assert Counter(run_ids_of(rig.ls_client, imported_into.id)) == dict.fromkeys(expected, 1)
        rig.ls_client.projects.update(id=imported_into.id, title=f"{title}-renamed")

        second.start()
        eventually(
            lambda: (
                second.get("/metrics") is not None
                and second.metric("ingest_duplicates_skipped_total", source="label_studio")
                + second.metric("ingest_runs_imported_total")
                >= len(events)
            ),
            timeout=120,
            message="the next owner never finished the batch",
        )
        assert Counter(run_ids_of(rig.ls_client, imported_into.id)) == dict.fromkeys(expected, 1)
        routed_now = project_titled(rig.ls_client, title)  # created by the next owner for the old title
        assert routed_now is not None
        assert routed_now.id != imported_into.id
        assert run_ids_of(rig.ls_client, routed_now.id) == [], "runs imported again into the new project"
        assert second.metric("ingest_duplicates_skipped_total", source="label_studio") == len(events)
        assert second.metric("ingest_runs_imported_total") == 0
    finally:
        first.kill()
        second.kill()

"""Pending markers per import request, and uncertain runs asked in their marker's project (fakes)."""

from __future__ import annotations

import uuid

from labelstudio_ingest.consumer.ledger import decode_entry

from .fakes import prompt_event, records_of
from .test_pipeline import World


def markers(world: World) -> list[tuple[int | None, list[uuid.UUID]]]:
    """The project and run_ids of every pending record written, in order."""
    entries = [decode_entry(r.value) for r in world.outbox.topic("in.ledger")]
    return [(e.project_id, list(e.run_ids)) for e in entries if e.state == "pending"]


def test_each_half_of_a_split_import_gets_its_own_marker_for_exactly_its_runs() -> None:
    world = World()
    events = [prompt_event() for _ in range(3)] + [prompt_event(text="BAD")]
    world.run(records_of(*events))
    sizes = [len(run_ids) for _, run_ids in markers(world)]
    assert sizes == world.ls.import_calls  # one marker per request, naming that request's runs
    assert sizes[0] == 4
    assert len(sizes) > 1


def test_a_retry_after_a_5xx_writes_a_fresh_marker_before_it_is_sent() -> None:
    world = World()
    events = [prompt_event() for _ in range(2)]
    world.ls.fail = ["503"]
    world.run(records_of(*events))
    assert len(world.ls.import_calls) == 2
    assert [len(run_ids) for _, run_ids in markers(world)] == [2, 2]


def test_an_uncertain_run_is_asked_in_the_project_its_marker_names_and_recorded_there() -> None:
    world = World()
    event = prompt_event(project="renamed-since")
    world.ledger.mark_pending(0, 7, [event.run_id])  # imported into project 7 by a member that died
    world.sink._client.projects.import_tasks(  # type: ignore[attr-defined]
        id=7,
        request=[{"data": {"prompt": "x", "run_id": str(event.run_id)}}],
        return_task_ids=True,
        request_options={"max_retries": 0},
    )
    world.run(records_of(event))  # the title now resolves to project 1
    assert world.ls.run_ids(1) == []
    assert world.ls.run_ids(7) == [str(event.run_id)]
    recorded = [decode_entry(r.value) for r in world.outbox.topic("in.ledger")]
    assert [(e.state, e.project_id) for e in recorded if e.state == "imported"] == [("imported", 7)]
    assert world.ledger.memory(0).is_imported(event.run_id.bytes)


def test_a_run_not_found_in_its_markers_project_is_imported_where_it_routes_now() -> None:
    world = World()
    event = prompt_event(project="dated-tomorrow")
    world.ledger.mark_pending(0, 7, [event.run_id])  # the earlier import never arrived
    world.run(records_of(event))
    assert world.ls.run_ids(1) == [str(event.run_id)]
    assert markers(world)[-1] == (1, [event.run_id])  # the new request was announced for project 1

"""Trajectories in the consumer's batch steps (fake Label Studio): one task per agent run, imported once
however often it is published, and an event kind this consumer does not know dead-lettered, not fatal."""

from __future__ import annotations

import json
import uuid

from labelstudio_ingest.schemas import TrajectoryEvent
from tests.consumer.fakes import prompt_event, records_of
from tests.consumer.test_pipeline import World
from tests.schemas.test_trajectory_contract import trajectory


def test_a_trajectory_is_one_task_imported_once_beside_other_events() -> None:
    world = World()
    run = TrajectoryEvent.model_validate(trajectory(target={"project_name": "p", "mode": "trajectory"}))
    other = prompt_event()
    world.run(records_of(run, other, run, run))
    assert sorted(world.ls.run_ids(1)) == sorted([str(run.run_id), str(other.run_id)])
    assert world.dead() == []


def test_an_unknown_kind_is_dead_lettered_as_unsupported_and_the_rest_imported() -> None:
    world = World()
    newer = json.dumps(trajectory(kind="plan", run_id=str(uuid.uuid4()))).encode()
    good = prompt_event()
    world.run(records_of(newer, good))
    assert world.dead() == [("unsupported_kind", "validate")]
    assert world.ls.run_ids(1) == [str(good.run_id)]

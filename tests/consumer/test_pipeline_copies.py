"""Copies of one run in one batch: only an imported first copy makes the later ones duplicates."""

from __future__ import annotations

import uuid

from labelstudio_ingest.consumer.pipeline import ItemState

from .fakes import prompt_event, records_of
from .test_pipeline import World


def test_a_dead_lettered_first_copy_leaves_a_later_valid_copy_to_be_imported() -> None:
    world = World()
    run_id = uuid.uuid4()
    refused = prompt_event(run_id=run_id, project="missing-target")
    valid = prompt_event(run_id=run_id)

    batch = world.run(records_of(refused, valid))

    assert world.ls.run_ids(1) == [str(run_id)]
    assert world.dead() == [("unknown_project", "route")]
    assert [item.state for item in batch.items] == [ItemState.DEAD, ItemState.IMPORTED]


def test_a_first_copy_rejected_by_label_studio_leaves_the_next_copy_to_be_imported() -> None:
    world = World()
    run_id = uuid.uuid4()
    rejected = prompt_event(run_id=run_id, text="BAD copy")
    valid = prompt_event(run_id=run_id, text="good copy")
    other = prompt_event()

    batch = world.run(records_of(rejected, other, valid))

    assert sorted(world.ls.run_ids(1)) == sorted([str(run_id), str(other.run_id)])
    assert world.dead() == [("import_rejected", "import")]
    assert batch.count(ItemState.IMPORTED) == 2


def test_copies_after_an_imported_first_copy_are_duplicates_of_the_batch() -> None:
    world = World()
    run_id = uuid.uuid4()

    batch = world.run(records_of(*[prompt_event(run_id=run_id) for _ in range(3)]))

    assert world.ls.run_ids(1) == [str(run_id)]
    assert [item.state for item in batch.items] == [ItemState.IMPORTED, *[ItemState.DUPLICATE] * 2]
    assert world.value("ingest_duplicates_skipped_total", source="batch") == 2

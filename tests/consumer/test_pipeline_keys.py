"""A valid record keyed otherwise than by its canonical run_id is re-published under that key."""

from __future__ import annotations

import uuid

import pytest

from labelstudio_ingest.consumer.pipeline import H_ORIGINAL_KEY, ItemState
from labelstudio_ingest.schemas import encode, event_headers, run_key

from .fakes import Record, prompt_event, records_of
from .test_pipeline import World


def odd_keys(run_id: uuid.UUID) -> list[bytes | None]:
    text = str(run_id)
    return [
        text.upper().encode(),
        f"{{{text}}}".encode(),
        f"urn:uuid:{text}".encode(),
        None,
        str(uuid.uuid4()).encode(),  # another run's id
    ]


@pytest.mark.parametrize("which", range(5))
def test_an_oddly_keyed_record_is_republished_under_its_canonical_key_and_not_imported(which: int) -> None:
    world = World()
    event = prompt_event()
    key = odd_keys(event.run_id)[which]
    record = Record(encode(event), key, partition=2, offset=7, headers=event_headers(event))

    batch = world.run([record])

    assert [item.state for item in batch.items] == [ItemState.REKEYED]
    assert world.ls.run_ids(1) == []
    [copy] = world.outbox.topic("in")
    assert copy.key == run_key(event.run_id)
    assert copy.value == record.value
    assert copy.partition is None  # the producer's partitioner puts it where the key belongs
    assert dict(copy.headers)[H_ORIGINAL_KEY] == (key or b"")
    assert dict(copy.headers)["schema-version"] == b"1"
    assert batch.next_offsets() == {("in", 2): 8}  # the original is committed
    assert world.value("ingest_events_rekeyed_total") == 1


def test_the_republished_copy_is_imported_once_even_when_published_twice() -> None:
    world = World()
    event = prompt_event()
    odd = Record(encode(event), str(event.run_id).upper().encode(), headers=event_headers(event))
    world.run([odd])
    world.run([odd])  # a crash between re-publishing and committing: consumed and re-published again

    copies = world.outbox.topic("in")
    world.run([Record(c.value, c.key, offset=i, headers=list(c.headers)) for i, c in enumerate(copies)])

    assert len(copies) == 2
    assert world.ls.run_ids(1) == [str(event.run_id)]
    assert world.value("ingest_duplicates_skipped_total", source="batch") == 1


def test_a_canonically_keyed_record_is_imported_where_it_is() -> None:
    world = World()

    world.run(records_of(prompt_event()))

    assert world.outbox.topic("in") == []
    assert world.value("ingest_events_rekeyed_total") == 0

"""Every copy of a run becomes one task, however its record is keyed (docs/EXACTLY_ONCE.md, "Keys"),
and a dead-lettered first copy does not hide a later valid copy of the run in the same batch."""

from __future__ import annotations

import json
import uuid
from collections import Counter

import pytest

from labelstudio_ingest.consumer import deadletter as dl
from labelstudio_ingest.schemas import Target, encode, event_headers
from tests.consumer.runner import Rig, eventually, project_titled, prompt_event, read_topic, run_ids_of

pytestmark = pytest.mark.integration


def test_a_run_published_under_every_odd_key_form_becomes_one_task(rig: Rig) -> None:
    target = Target(project_name=f"it-keys-{uuid.uuid4().hex[:8]}")
    event = prompt_event(target=target)
    text = str(event.run_id)
    forms: list[tuple[str, bytes | None]] = [  # run_id in the value, record key
        (text.upper(), text.upper().encode()),
        (f"{{{text}}}", f"{{{text}}}".encode()),
        (f"urn:uuid:{text}", f"urn:uuid:{text}".encode()),
        (text, None),
        (text, str(uuid.uuid4()).encode()),  # another run's id
    ]
    other = prompt_event(target=target)  # a neighbour, keyed canonically
    rig.publisher.events(rig.topic, [event, other])
    consumer = rig.consumer()
    try:
        consumer.start()
        project = eventually(
            lambda: project_titled(rig.ls_client, target.project_name or ""), message="project"
        )
        eventually(lambda: len(run_ids_of(rig.ls_client, project.id)) == 2, message="the first copies")
        for run_id, key in forms:  # later batches: other partitions' ledgers never saw the run
            value = json.loads(encode(event))
            value["run_id"] = run_id
            rig.publisher.raw(rig.topic, json.dumps(value).encode(), key=key, headers=event_headers(event))
        eventually(
            lambda: consumer.metric("ingest_duplicates_skipped_total") >= len(forms),
            timeout=120,
            message="not every copy was seen",
        )
        assert Counter(run_ids_of(rig.ls_client, project.id)) == {text: 1, str(other.run_id): 1}
        assert consumer.metric("ingest_events_rekeyed_total") == len(forms)
        assert consumer.metric("ingest_events_dead_lettered_total") == 0
        assert consumer.terminate() == 0
    finally:
        consumer.kill()


def test_a_dead_lettered_first_copy_does_not_hide_a_valid_later_copy(rig: Rig) -> None:
    target = Target(project_name=f"it-copies-{uuid.uuid4().hex[:8]}")
    valid = prompt_event(target=target)
    refused = valid.model_copy(update={"target": Target(project_id=10**9), "event_id": uuid.uuid4()})
    rig.publisher.events(rig.topic, [refused, valid])  # one partition (same key), one batch
    consumer = rig.consumer()
    try:
        consumer.start()
        project = eventually(
            lambda: project_titled(rig.ls_client, target.project_name or ""), message="project"
        )
        eventually(lambda: run_ids_of(rig.ls_client, project.id), message="the valid copy was not imported")
        [letter] = read_topic(rig.bootstrap, f"{rig.topic}.dlq", expect=1)
        assert dl.header(list(letter.headers), dl.H_REASON) == "unknown_project"
        assert run_ids_of(rig.ls_client, project.id) == [str(valid.run_id)]
        assert consumer.terminate() == 0
    finally:
        consumer.kill()

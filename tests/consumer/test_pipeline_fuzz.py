"""Fuzzing the consumer's decode-and-validate path: hostile records among good ones never stop the flow.

Every record of a batch ends as exactly one outcome (a task, a duplicate skip or a dead letter with
a reason), the batch always finishes, and the good records around the bad ones are imported.
"""

from __future__ import annotations

import json
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelstudio_ingest.consumer import deadletter as dl
from labelstudio_ingest.consumer.pipeline import ItemState
from labelstudio_ingest.schemas import DecodeErrorReason

from .fakes import prompt_event, records_of
from .test_pipeline import World

DECODE_REASONS = {reason.value for reason in DecodeErrorReason}

hostile_values = st.one_of(
    st.binary(max_size=300),
    st.just(b"[" * 200_000),
    st.just(b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
    st.just(b'{"schema_version": 1, "run_id": "x", "run_id": "y"}'),
    st.just(b'{"schema_version": 1, "kind": "prompt", "latency_ms": NaN}'),
    st.just(b'{"schema_version": 1e999}'),
    st.just(b'"\\ud800"'),
    st.just(b"\xed\xa0\x80"),
    st.just(b"x" * 1_100_000),
    st.builds(lambda t: json.dumps({"schema_version": 1, "kind": "chat", "messages": t}).encode(), st.text()),
    st.integers(-5, 10**6).map(lambda v: json.dumps({"schema_version": v}).encode()),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(hostile_values, st.just(None)), min_size=1, max_size=12), st.randoms())
def test_bad_records_are_dead_letters_and_good_ones_flow(bad: list[bytes | None], rnd: object) -> None:
    world = World()
    good = [prompt_event(project="fuzz", text=f"good {i}") for i in range(3)]
    mixed: list[object] = [*good, *bad]
    rnd.shuffle(mixed)  # type: ignore[attr-defined]
    records = records_of(*[b"" if v is None else v for v in mixed])  # type: ignore[arg-type]

    batch = world.run(records)

    states = [item.state for item in batch.items]
    assert states.count(ItemState.IMPORTED) == len(good)
    assert states.count(ItemState.DEAD) == len(bad)
    assert sorted(world.ls.run_ids(1)) == sorted(str(e.run_id) for e in good)
    for reason, stage in world.dead():
        assert reason in DECODE_REASONS
        assert stage in {dl.Stage.DECODE.value, dl.Stage.VALIDATE.value}


def test_a_batch_of_only_hostile_records_finishes() -> None:
    world = World()
    values = [b"[" * 300_000, b"\xff" * 10, b'{"k": 1, "k": 2}', b"NaN", str(uuid.uuid4()).encode()]
    batch = world.run(records_of(*values))
    assert [item.state for item in batch.items] == [ItemState.DEAD] * len(values)
    assert [reason for reason, _ in world.dead()] == [
        "not_json",
        "not_utf8",
        "invalid",
        "not_json",
        "not_json",
    ]

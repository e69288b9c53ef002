"""A run that breaks Label Studio (5xx or timeout, every time) is isolated and dead-lettered alone.

The app decides when to isolate (after ``INGEST_ISOLATE_AFTER_FAILURES`` such failures while
/health answers); these tests drive the pipeline with ``batch.isolate`` set, against a fake Label
Studio that fails any request holding a marked prompt.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from label_studio_sdk.core.api_error import ApiError

from labelstudio_ingest.consumer.errors import LabelStudioUnavailable
from labelstudio_ingest.consumer.ledger import decode_entry
from labelstudio_ingest.consumer.pipeline import ItemState
from labelstudio_ingest.consumer.sink import Unit, requests_of

from .fakes import prompt_event, records_of
from .test_pipeline import World

POISON = "POISON"


def poisoned(world: World, failure: str, *, applied: bool = False) -> None:
    """Make the fake Label Studio fail every import holding a ``POISON`` prompt with ``failure``
    (``500`` or ``timeout``), after applying it when ``applied``."""
    original: Callable[..., Any] = world.ls.import_tasks

    def import_tasks(*, id: int, request: list[dict[str, Any]], **kwargs: Any) -> Any:
        if not any(POISON in str(t["data"].get("prompt")) for t in request):
            return original(id=id, request=request, **kwargs)
        if applied:
            original(id=id, request=request, **kwargs)
        else:
            world.ls.import_calls.append(len(request))
        if failure == "timeout":
            raise httpx.ReadTimeout("timed out", request=httpx.Request("POST", "http://ls/import"))
        raise ApiError(status_code=500, body={"detail": "unsupported Unicode escape sequence"})

    world.ls.import_tasks = import_tasks  # type: ignore[method-assign]
    world.sink.timeout_s = 0.01  # a timed-out request is asked about once its timeout is over


def run_isolating(world: World, records: list[Any]) -> Any:
    batch = world.pipeline.start(records, 1)
    batch.isolate = True
    world.pipeline.process(batch)
    world.pipeline.finish(batch)
    return batch


@pytest.mark.parametrize("failure", ["500", "timeout"])
def test_the_run_that_breaks_label_studio_is_dead_lettered_and_the_others_imported(failure: str) -> None:
    world = World()
    poisoned(world, failure)
    good = [prompt_event(text=f"ok {i}") for i in range(15)]
    bad = prompt_event(text=f"{POISON} here")

    batch = run_isolating(world, records_of(*good[:6], bad, *good[6:]))

    assert sorted(world.ls.run_ids(1)) == sorted(str(e.run_id) for e in good)
    assert world.dead() == [("server_error", "import")]
    assert batch.count(ItemState.DEAD) == 1
    assert batch.count(ItemState.IMPORTED) == len(good)
    entries = [decode_entry(r.value) for r in world.outbox.topic("in.ledger")]
    assert [e.run_ids for e in entries if e.state == "rejected"] == [(bad.run_id,)]
    assert len(world.ls.import_calls) <= 2 * 4 + 1  # log2(16) levels, two requests each


def test_the_dead_letter_says_what_label_studio_answered() -> None:
    world = World()
    poisoned(world, "500")

    run_isolating(world, records_of(prompt_event(text=POISON)))

    [letter] = world.outbox.topic("in.dlq")
    message = dict(letter.headers)["ingest.error.exception.message"].decode()
    assert message.startswith("Label Studio failed the import of this run alone")
    assert "HTTP 500: unsupported Unicode escape sequence" in message


def test_a_run_applied_before_its_500_is_recorded_as_imported_not_dead_lettered() -> None:
    world = World()
    poisoned(world, "500", applied=True)
    bad = prompt_event(text=POISON)

    batch = run_isolating(world, records_of(bad, prompt_event()))

    assert world.dead() == []
    assert batch.count(ItemState.IMPORTED) == 2
    assert world.ls.run_ids(1).count(str(bad.run_id)) == 1


def test_before_isolating_a_500_is_asked_about_and_retried_as_not_applied() -> None:
    world = World()
    poisoned(world, "500")
    batch = world.pipeline.start(records_of(prompt_event(text=POISON), prompt_event()), 1)

    with pytest.raises(LabelStudioUnavailable) as caught:
        world.pipeline.process(batch)

    assert caught.value.suspect
    assert not caught.value.maybe_applied  # Label Studio was asked: nothing arrived
    assert world.ls.list_calls == 1
    assert batch.count(ItemState.NEW) == 2
    assert world.dead() == []


def test_a_gateway_504_is_suspect_but_not_asked_about_at_once() -> None:
    world = World()
    world.ls.fail = ["504"]
    original = world.ls.import_tasks

    def import_tasks(**kwargs: Any) -> Any:
        if world.ls.fail and world.ls.fail[0] == "504":
            world.ls.fail.pop(0)
            raise ApiError(status_code=504, body="gateway timeout")
        return original(**kwargs)

    world.ls.import_tasks = import_tasks  # type: ignore[method-assign]
    batch = world.pipeline.start(records_of(prompt_event()), 1)

    with pytest.raises(LabelStudioUnavailable) as caught:
        world.pipeline.process(batch)

    assert caught.value.suspect
    assert caught.value.maybe_applied  # Label Studio may still be working on it behind the gateway
    assert world.ls.list_calls == 0


def test_a_refused_connection_is_no_reason_to_suspect_the_records() -> None:
    world = World()
    world.ls.fail = ["connect"]
    batch = world.pipeline.start(records_of(prompt_event()), 1)

    with pytest.raises(LabelStudioUnavailable) as caught:
        world.pipeline.process(batch)

    assert not caught.value.suspect


def test_requests_are_cut_by_bytes_and_by_tasks_never_inside_a_run() -> None:
    def unit(size: int, tasks: int) -> Unit[int]:
        return Unit(size, [{"data": {"run_id": "r"}}] * tasks, size)

    units = [unit(400, 1), unit(400, 1), unit(300, 1), unit(2_000, 1), unit(10, 3), unit(10, 3)]

    cut = requests_of(units, max_bytes=1_000, max_tasks=4)

    assert [[u.key for u in request] for request in cut] == [[400, 400], [300], [2_000], [10], [10]]


def test_a_body_too_large_for_label_studio_is_split_until_it_passes_and_nothing_is_dead_lettered() -> None:
    world = World()
    original: Callable[..., Any] = world.ls.import_tasks

    def import_tasks(*, id: int, request: list[dict[str, Any]], **kwargs: Any) -> Any:
        if len(request) > 4:  # what Label Studio answers to a body over its upload limit
            world.ls.import_calls.append(len(request))
            raise ApiError(
                status_code=500, body="You cannot access body after reading from request's data stream"
            )
        return original(id=id, request=request, **kwargs)

    world.ls.import_tasks = import_tasks  # type: ignore[method-assign]
    events = [prompt_event(text=f"ok {i}") for i in range(16)]

    batch = run_isolating(world, records_of(*events))

    assert sorted(world.ls.run_ids(1)) == sorted(str(e.run_id) for e in events)
    assert world.dead() == []
    assert batch.count(ItemState.IMPORTED) == len(events)

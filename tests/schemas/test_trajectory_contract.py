"""The trajectory kind in the contract: whole agent runs round-trip, stay within stated limits, and a
reader that does not know the kind (an older consumer, or this one for a newer kind) dead-letters it."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

import pytest
from pydantic import Field, TypeAdapter, ValidationError

from labelstudio_ingest.schemas import (
    SCHEMA_VERSION,
    ChatEvent,
    DecodeErrorReason,
    EventDecodeError,
    Limits,
    PromptEvent,
    TrajectoryEvent,
    decode,
    encode,
)
from labelstudio_ingest.schemas.events import json_schema
from labelstudio_ingest.schemas.wire import describe_validation_error


def trajectory(**changes: Any) -> dict[str, Any]:
    """A two-step agent run (a tool call, its result, the answer) as a trajectory event's JSON."""
    fields: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "event_id": str(uuid.uuid4()),
        "run_id": str(uuid.uuid4()),
        "event_time": "2026-01-01T00:00:02Z",
        "target": {"project_name": "agents", "mode": "trajectory"},
        "kind": "trajectory",
        "input": [{"role": "user", "content": "Weather in Tokyo?"}],
        "steps": [
            {
                "index": 0,
                "type": "llm",
                "output": {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"name": "get_weather", "args": {"city": "Tokyo"}, "id": "call_1"}],
                },
            },
            {
                "index": 1,
                "type": "tool",
                "name": "get_weather",
                "tool_call_id": "call_1",
                "arguments": {"city": "Tokyo"},
                "result": "18°C",
            },
            {"index": 2, "type": "llm", "output": {"role": "assistant", "content": "It is 18°C."}},
        ],
        "output": "It is 18°C.",
    }
    fields.update(changes)
    return fields


def _bytes(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


def test_a_trajectory_round_trips_through_the_wire() -> None:
    event = decode(_bytes(trajectory()))
    assert isinstance(event, TrajectoryEvent)
    assert [s.type.value for s in event.steps] == ["llm", "tool", "llm"]
    assert decode(encode(event)) == event


def test_an_older_consumer_dead_letters_a_trajectory_as_invalid_naming_the_kind() -> None:
    """What a consumer built before this kind does: its union has no ``trajectory`` branch, so
    validation fails with a sentence naming the kind (its pipeline dead-letters it as ``invalid``)."""
    old = TypeAdapter(Annotated[PromptEvent | ChatEvent, Field(discriminator="kind")])
    with pytest.raises(ValidationError) as caught:
        old.validate_python(trajectory())
    assert describe_validation_error(caught.value).startswith("kind: must be one of")
    assert "(got 'trajectory')" in describe_validation_error(caught.value)


def test_a_kind_this_reader_does_not_know_is_unsupported_not_a_crash() -> None:
    with pytest.raises(EventDecodeError) as caught:
        decode(_bytes(trajectory(kind="plan")))
    assert caught.value.reason is DecodeErrorReason.UNSUPPORTED_KIND
    assert "'plan'" in caught.value.detail


def test_a_trajectory_over_the_step_and_text_limits_is_refused_as_oversized() -> None:
    limits = Limits(max_trajectory_steps=2, max_step_text_chars=5)
    with pytest.raises(EventDecodeError) as caught:
        decode(_bytes(trajectory()), limits)
    assert caught.value.reason is DecodeErrorReason.OVERSIZED
    assert "3 steps; the limit is 2" in caught.value.detail
    assert "input[0].content has 17 characters; the limit is 5" in caught.value.detail


def test_a_trajectory_carries_its_answer_in_output_not_generations() -> None:
    with pytest.raises(EventDecodeError, match="generations must be empty"):
        decode(_bytes(trajectory(generations=[[{"text": "x"}]])))


def test_a_trajectory_needs_an_input() -> None:
    with pytest.raises(EventDecodeError) as caught:
        decode(_bytes(trajectory(input=[])))
    assert caught.value.reason is DecodeErrorReason.INVALID


def test_the_json_schema_describes_the_trajectory_kind_and_its_truncation() -> None:
    schema = json_schema()
    assert "TrajectoryEvent" in schema["$defs"]
    properties = schema["$defs"]["TrajectoryEvent"]["properties"]
    assert {"input", "steps", "output", "truncated"} <= set(properties)
    assert set(schema["$defs"]["TrajectoryTruncation"]["properties"]) == {
        "steps_dropped",
        "dropped_from",
        "texts_cut",
        "chars_cut",
    }

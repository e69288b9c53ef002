"""The wire format: events round-trip, and bad bytes always give a clean EventDecodeError."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelstudio_ingest.schemas import (
    SCHEMA_VERSION,
    ChatEvent,
    DecodeErrorReason,
    Event,
    EventDecodeError,
    Generation,
    Limits,
    PromptEvent,
    Target,
    decode,
    encode,
    event_headers,
    event_key,
)

from .strategies import events, json_values

fuzz = settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)


def _event(**changes: Any) -> PromptEvent:
    fields: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": "prompt",
        "event_id": uuid.uuid4(),
        "run_id": uuid.uuid4(),
        "event_time": datetime.now(timezone.utc),
        "prompts": ["What is 2+2?"],
        "generations": [[Generation(text="4")]],
        "target": Target(project_name="LangChain-2026-11-21"),
    }
    fields.update(changes)
    return PromptEvent(**fields)


def _valid_dict() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(encode(_event()))
    return result


def _reason(data: bytes | None, limits: Limits | None = None) -> DecodeErrorReason:
    with pytest.raises(EventDecodeError) as caught:
        decode(data) if limits is None else decode(data, limits)
    return caught.value.reason


@given(events)
@fuzz
def test_every_event_round_trips_through_the_wire(event: Event) -> None:
    assert decode(encode(event)) == event


@given(events)
@fuzz
def test_encoding_is_utf8_json_object(event: Event) -> None:
    obj = json.loads(encode(event).decode("utf-8"))
    assert obj["kind"] == event.kind
    assert obj["schema_version"] == SCHEMA_VERSION


@given(st.binary(max_size=512))
@fuzz
def test_random_bytes_never_crash(data: bytes) -> None:
    detail = "decoded"
    try:
        decode(data)
    except EventDecodeError as exc:
        detail = exc.detail
    assert detail


@given(json_values)
@fuzz
def test_random_json_never_crashes(value: object) -> None:
    with pytest.raises(EventDecodeError):
        decode(json.dumps(value).encode())


@given(events, st.data())
@fuzz
def test_mutated_encodings_decode_or_fail_cleanly(event: Event, data: st.DataObject) -> None:
    raw = bytearray(encode(event))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "delete", "insert"]))
        if action == "flip":
            raw[position] ^= data.draw(st.integers(1, 255))
        elif action == "delete" and len(raw) > 1:
            del raw[position]
        else:
            raw.insert(position, data.draw(st.integers(0, 255)))
    outcome: object = None
    try:
        outcome = decode(bytes(raw))
    except EventDecodeError as exc:
        outcome = exc.reason
    assert isinstance(outcome, PromptEvent | ChatEvent | DecodeErrorReason)


@given(st.data())
@fuzz
def test_a_field_of_the_wrong_type_is_invalid_and_named(data: st.DataObject) -> None:
    obj = _valid_dict()
    field = data.draw(
        st.sampled_from(["event_id", "run_id", "event_time", "prompts", "target", "generations"])
    )
    wrong = ["not-a-value", [None], {"x": 1}, True]
    if field != "event_time":  # a number is a Unix timestamp there, which pydantic accepts
        wrong.append(12345)
    obj[field] = data.draw(st.sampled_from(wrong))
    with pytest.raises(EventDecodeError) as caught:
        decode(json.dumps(obj).encode())
    assert caught.value.reason is DecodeErrorReason.INVALID
    assert field in caught.value.detail


def test_key_and_headers() -> None:
    event = _event()
    assert event_key(event) == str(event.run_id).encode()
    assert dict(event_headers(event)) == {"content-type": b"application/json", "schema-version": b"1"}


def test_unknown_fields_from_newer_producers_are_ignored() -> None:
    obj = _valid_dict()
    obj["a_field_from_the_future"] = {"nested": [1, 2]}
    obj["target"]["another_new_one"] = "x"
    obj["generations"][0][0]["logprobs"] = [0.1]
    assert decode(json.dumps(obj).encode()).run_id == _event(run_id=uuid.UUID(obj["run_id"])).run_id


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (None, DecodeErrorReason.EMPTY),
        (b"", DecodeErrorReason.EMPTY),
        (b"\xff\xfe{}", DecodeErrorReason.NOT_UTF8),
        (b'{"kind": "prompt"', DecodeErrorReason.NOT_JSON),
        (b'{"latency_ms": NaN}', DecodeErrorReason.NOT_JSON),
        (b'{"latency_ms": Infinity}', DecodeErrorReason.NOT_JSON),
        (b"[" * 10_000 + b"]" * 10_000, DecodeErrorReason.NOT_JSON),
        (b"[1, 2]", DecodeErrorReason.INVALID),
        (b'"a string"', DecodeErrorReason.INVALID),
        (b'{"schema_version": 2, "kind": "prompt"}', DecodeErrorReason.UNSUPPORTED_VERSION),
        (b'{"schema_version": 1}', DecodeErrorReason.INVALID),
    ],
)
def test_each_class_of_bad_bytes_has_its_reason(data: bytes | None, reason: DecodeErrorReason) -> None:
    assert _reason(data) is reason


def test_messages_say_what_to_fix() -> None:
    obj = _valid_dict()
    del obj["event_id"]
    obj["run_id"] = "abc"
    obj["target"] = {"mode": "prompt"}
    with pytest.raises(EventDecodeError) as caught:
        decode(json.dumps(obj).encode())
    detail = caught.value.detail
    assert "event_id: required field is missing" in detail
    assert "run_id: Input should be a valid UUID" in detail
    assert "'abc'" in detail
    assert "target: target needs a project_id or a project_name" in detail


def test_missing_kind_is_explained() -> None:
    obj = _valid_dict()
    del obj["kind"]
    with pytest.raises(
        EventDecodeError,
        match="kind: must be one of \\['chat', 'prompt', 'trajectory'\\] \\(it is missing\\)",
    ):
        decode(json.dumps(obj).encode())


def test_unsupported_version_names_the_versions() -> None:
    obj = _valid_dict()
    obj["schema_version"] = 7
    with pytest.raises(
        EventDecodeError, match="unsupported schema_version 7; this reader understands \\[1\\]"
    ):
        decode(json.dumps(obj).encode())


def test_a_successful_run_needs_one_generation_list_per_prompt() -> None:
    obj = _valid_dict()
    obj["prompts"] = ["a", "b"]
    with pytest.raises(EventDecodeError, match="generations has 1 lists but the run has 2 inputs"):
        decode(json.dumps(obj).encode())
    obj["generations"] = []
    with pytest.raises(EventDecodeError, match="a run without an error must carry its generations"):
        decode(json.dumps(obj).encode())
    obj["error"] = {"type": "TimeoutError", "message": "the model did not answer"}
    assert decode(json.dumps(obj).encode()).error is not None


def test_chat_roles_are_the_four_real_ones() -> None:
    obj = _valid_dict()
    obj.pop("prompts")
    obj["kind"] = "chat"
    obj["messages"] = [[{"role": "HumanMessage", "content": "hi"}]]
    with pytest.raises(EventDecodeError, match=re.escape("messages[0][0].role")):
        decode(json.dumps(obj).encode())
    obj["messages"] = [[{"role": "user", "content": "hi"}]]
    assert decode(json.dumps(obj).encode()).kind == "chat"


def test_size_limits_are_configurable() -> None:
    event = _event(prompts=["x" * 100], tags=["a", "b"])
    data = encode(event)
    assert _reason(data, Limits(max_event_bytes=len(data) - 1)) is DecodeErrorReason.OVERSIZED
    assert decode(data, Limits(max_event_bytes=len(data))) == event
    with pytest.raises(EventDecodeError, match="prompts\\[0\\] has 100 characters; the limit is 99"):
        decode(data, Limits(max_text_chars=99))
    assert _reason(data, Limits(max_tags=1)) is DecodeErrorReason.OVERSIZED
    config = encode(_event(target=Target(project_name="p", project_config="<View/>" * 10)))
    assert _reason(config, Limits(max_project_config_bytes=10)) is DecodeErrorReason.OVERSIZED
    several = encode(_event(prompts=["a", "b", "c"], generations=[[Generation(text="x")]] * 3))
    assert _reason(several, Limits(max_inputs=2)) is DecodeErrorReason.OVERSIZED

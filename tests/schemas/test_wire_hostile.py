"""Hostile bytes on the wire: every class the issue names is one clean ``EventDecodeError``.

Deep nesting, huge strings, wrong types, invalid UTF-8, NaN/Infinity, duplicate keys, lone
surrogates: each gives its stable reason and a readable detail, never another exception and never
a stall (every test here runs under pytest-timeout; inputs go up to the size limit).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelstudio_ingest.schemas import DEFAULT_LIMITS, DecodeErrorReason, EventDecodeError, decode, encode

from .strategies import events

fuzz = settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
NOT_JSON, INVALID, OVERSIZED = (
    DecodeErrorReason.NOT_JSON,
    DecodeErrorReason.INVALID,
    DecodeErrorReason.OVERSIZED,
)


def _fail(data: bytes) -> EventDecodeError:
    with pytest.raises(EventDecodeError) as caught:
        decode(data)
    assert caught.value.detail
    return caught.value


def _valid() -> dict[str, Any]:
    return {
        "schema_version": 1,
        "kind": "prompt",
        "event_id": "6a2f41a3-c54c-4c6b-9cbf-53c0d2a4c7a1",
        "run_id": "0b3f4c5e-8d1a-4f2b-9c3d-7e6f5a4b3c2d",
        "event_time": "2026-11-21T10:00:00Z",
        "prompts": ["hi"],
        "generations": [[{"text": "hello"}]],
        "target": {"project_name": "p"},
    }


@pytest.mark.parametrize("depth", [64, 1_000, 100_000, 400_000])
@pytest.mark.parametrize(("open_", "close"), [(b"[", b"]"), (b'{"a":', b"}")])
def test_deep_nesting(depth: int, open_: bytes, close: bytes) -> None:
    data = open_ * depth + b"1" + close * depth
    error = _fail(data[: DEFAULT_LIMITS.max_event_bytes])  # cut to the limit: unbalanced is not JSON either
    assert error.reason in {NOT_JSON, INVALID}


def test_deep_nesting_inside_an_event_field() -> None:
    obj = _valid()
    raw = json.dumps(obj).encode()
    nested = b"[" * 50_000 + b"]" * 50_000
    data = raw.replace(b'"hi"', nested)
    assert _fail(data).reason in {NOT_JSON, INVALID}


@pytest.mark.parametrize(
    "literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e400", b"nan", b"inf", b"1E+9999"]
)
def test_non_finite_numbers(literal: bytes) -> None:
    data = (
        json.dumps({**_valid(), "latency_ms": 0})
        .encode()
        .replace(b'"latency_ms": 0', b'"latency_ms": ' + literal)
    )
    assert _fail(data).reason is NOT_JSON


@pytest.mark.parametrize(
    ("data", "key"),
    [
        (b'{"run_id": "a", "run_id": "b"}', "'run_id'"),
        (b'{"target": {"project_id": 1, "project_id": 2}}', "'project_id'"),
        (b'{"x": [{"k": 1, "k": 1}]}', "'k'"),
    ],
)
def test_duplicate_keys_are_refused_not_resolved(data: bytes, key: str) -> None:
    error = _fail(data)
    assert error.reason is INVALID
    assert key in error.detail
    assert "twice" in error.detail


def test_duplicate_keys_in_a_valid_event() -> None:
    raw = json.dumps(_valid()).encode()
    smuggled = raw[:-1] + b', "run_id": "11111111-1111-4111-8111-111111111111"}'
    assert _fail(smuggled).reason is INVALID


@pytest.mark.parametrize("escape", [b"\\ud800", b"\\udfff", b"\\ud83d x", b"\\uDC00\\uD800"])
def test_lone_surrogates_are_not_text(escape: bytes) -> None:
    data = json.dumps(_valid()).encode().replace(b'"hi"', b'"' + escape + b'"')
    assert _fail(data).reason is NOT_JSON


def test_surrogate_pairs_are_text() -> None:
    data = json.dumps(_valid()).encode().replace(b'"hi"', b'"\\ud83d\\ude00"')
    assert decode(data).prompts == ["\N{GRINNING FACE}"]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "data",
    [
        b"\xc3\x28",
        b"\xed\xa0\x80",  # a UTF-8-encoded surrogate
        b"\xf4\x90\x80\x80",  # above U+10FFFF
        b"\xc0\xaf",  # overlong
        b'{"a": "\xff"}',
    ],
)
def test_invalid_utf8(data: bytes) -> None:
    assert _fail(data).reason is DecodeErrorReason.NOT_UTF8


def test_huge_strings_within_and_beyond_the_limits() -> None:
    over_bytes = json.dumps({**_valid(), "prompts": ["x" * DEFAULT_LIMITS.max_event_bytes]}).encode()
    assert _fail(over_bytes).reason is OVERSIZED
    over_text = json.dumps({**_valid(), "prompts": ["é" * (DEFAULT_LIMITS.max_text_chars // 2 + 1)] * 2})
    error = _fail(over_text.encode())
    assert error.reason is OVERSIZED
    long_key = json.dumps({**_valid(), "k" * 900_000: 1}).encode()
    decode(long_key)  # an unknown field is ignored, whatever its name's length (within the size limit)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=30,
    ),
    st.sampled_from(["prompts", "generations", "target", "messages", "kind", "run_id", "metadata", "tags"]),
)
@fuzz
def test_any_json_in_any_field_is_an_event_or_a_clean_error(value: object, field: str) -> None:
    obj = {**_valid(), field: value}
    try:
        data = json.dumps(obj).encode()  # floats() includes NaN/Infinity: json.dumps writes them bare
    except ValueError:
        return
    outcome: object
    try:
        outcome = decode(data)
    except EventDecodeError as exc:
        outcome = (exc.reason, bool(exc.detail))
    assert not isinstance(outcome, tuple) or outcome[1], "an error without a detail"


@given(events, st.sampled_from([b"NaN", b"1e999", b'"\\udead"']), st.data())
@fuzz
def test_poison_spliced_into_real_events(event: Any, poison: bytes, data: st.DataObject) -> None:
    """Any field of a real event replaced by a non-finite number or a lone surrogate."""
    obj = json.loads(encode(event))
    field = data.draw(st.sampled_from(sorted(obj)))
    marker = "__poison__"
    spliced = json.dumps({**obj, field: marker}).encode().replace(f'"{marker}"'.encode(), poison)
    with pytest.raises(EventDecodeError):
        decode(spliced)

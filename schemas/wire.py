"""The one wire format of events: UTF-8 JSON, keyed by ``run_id``. Encode and decode live only here.

:func:`decode` never raises anything but :class:`EventDecodeError` for bad bytes, and its
``reason`` is a short stable code (used for dead-letter headers and metric labels) while its
message says what is wrong in words a person can act on.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import pydantic_core
from pydantic import ValidationError

from labelstudio_ingest.schemas._compat import StrEnum
from labelstudio_ingest.schemas.events import (
    INTERACTION_EVENT_ADAPTER,
    KNOWN_KINDS,
    SCHEMA_VERSION,
    SUPPORTED_SCHEMA_VERSIONS,
    ChatEvent,
    PromptEvent,
    TrajectoryEvent,
    unsupported_version_message,
)
from labelstudio_ingest.schemas.limits import DEFAULT_LIMITS, Limits, limit_violations

Event = PromptEvent | ChatEvent | TrajectoryEvent

CONTENT_TYPE = "application/json"
HEADER_CONTENT_TYPE = "content-type"
HEADER_SCHEMA_VERSION = "schema-version"

_MAX_ERRORS_SHOWN = 5
_MAX_INPUT_SHOWN = 60
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
"""A ``\\uD800``-``\\uDFFF`` escape: a pair encodes one character, a lone one is not text."""
_NUL_ESCAPE = b"\\u0000"
"""How JSON writes U+0000 (a raw NUL byte is not JSON): the only way it can reach a string."""
NUL = "\x00"
NUL_REPLACEMENT = "\ufffd"


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(f"the key {_short(key)} appears twice in one object; keys must be unique")


class DecodeErrorReason(StrEnum):
    """Why bytes are not an event. Stable codes: dashboards and dead-letter filters use them."""

    EMPTY = "empty"
    OVERSIZED = "oversized"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    UNSUPPORTED_VERSION = "unsupported_schema_version"
    UNSUPPORTED_KIND = "unsupported_kind"
    INVALID = "invalid"


class EventDecodeError(ValueError):
    """Bytes that are not a valid event, with a stable ``reason`` and a readable ``detail``."""

    def __init__(self, reason: DecodeErrorReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class WireRecord(Protocol):
    """What the wire needs of a record type: a run id to key by, a version, pydantic's JSON dump."""

    @property
    def run_id(self) -> uuid.UUID: ...

    @property
    def schema_version(self) -> int: ...

    def model_dump_json(self, *, exclude_none: bool = False) -> str: ...


def encode(event: WireRecord) -> bytes:
    """The event as UTF-8 JSON (unset optional fields left out)."""
    return event.model_dump_json(exclude_none=True).encode("utf-8")


def encode_plain(event: Mapping[str, Any]) -> bytes:
    """An event built as plain data (dicts, lists, str, numbers, UUID, datetime) as UTF-8 JSON.

    The producer's fast path: it skips building and re-validating the contract's models for data
    it shaped itself. Given the fields in the models' order, without the ``None`` ones, the bytes
    are exactly those of :func:`encode` on the validated event (the producer's tests hold it to that).

    Raises:
        pydantic_core.PydanticSerializationError: for values JSON cannot carry (e.g. lone surrogates).
    """
    return pydantic_core.to_json(event)


def event_key(event: WireRecord) -> bytes:
    """The record key: the run id, so every event of a run lands on one partition."""
    return run_key(event.run_id)


def run_key(run_id: uuid.UUID) -> bytes:
    """The record key of a run's events (see :func:`event_key`)."""
    return str(run_id).encode("ascii")


def event_headers(event: WireRecord) -> list[tuple[str, bytes]]:
    """Record headers that let a reader route or refuse a record without parsing it."""
    return version_headers(event.schema_version)


def version_headers(schema_version: int) -> list[tuple[str, bytes]]:
    """The headers of an event of ``schema_version`` (see :func:`event_headers`)."""
    return [
        (HEADER_CONTENT_TYPE, CONTENT_TYPE.encode()),
        (HEADER_SCHEMA_VERSION, str(schema_version).encode()),
    ]


def decode(data: bytes | bytearray | memoryview | None, limits: Limits = DEFAULT_LIMITS) -> Event:
    """Parse and validate one record value.

    Raises:
        EventDecodeError: for anything that is not a valid event within ``limits``.
    """
    if data is None or len(data) == 0:
        raise EventDecodeError(DecodeErrorReason.EMPTY, "the record has no value")
    raw = bytes(data)
    if len(raw) > limits.max_event_bytes:
        raise EventDecodeError(
            DecodeErrorReason.OVERSIZED,
            f"the record is {len(raw)} bytes; the limit is {limits.max_event_bytes}",
        )
    obj = strict_json(raw)
    if not isinstance(obj, dict):
        raise EventDecodeError(DecodeErrorReason.INVALID, f"an event is a JSON object, not {_json_type(obj)}")
    if _NUL_ESCAPE in raw and (where := nul_path(obj)) is not None:
        raise EventDecodeError(
            DecodeErrorReason.INVALID,
            f"{where or 'event'}: holds U+0000 (NUL); no string of an event may (PostgreSQL cannot store it)",
        )
    version = obj.get("schema_version")
    if (
        isinstance(version, int)
        and not isinstance(version, bool)
        and version not in SUPPORTED_SCHEMA_VERSIONS
    ):
        raise EventDecodeError(DecodeErrorReason.UNSUPPORTED_VERSION, unsupported_version_message(version))
    kind = obj.get("kind")
    if isinstance(kind, str) and kind not in KNOWN_KINDS:
        raise EventDecodeError(DecodeErrorReason.UNSUPPORTED_KIND, unsupported_kind_message(kind))
    try:
        event = INTERACTION_EVENT_ADAPTER.validate_python(obj)
    except ValidationError as exc:
        raise EventDecodeError(DecodeErrorReason.INVALID, describe_validation_error(exc)) from None
    except RecursionError:
        raise EventDecodeError(DecodeErrorReason.INVALID, "the event is nested too deeply") from None
    problems = limit_violations(event, limits)
    if problems:
        raise EventDecodeError(DecodeErrorReason.OVERSIZED, "; ".join(problems))
    return event


def nul_path(value: Any, path: str = "") -> str | None:
    """The path (``metadata.note``, ``prompts[0]``) of the first string or key holding U+0000, or None.

    The contract forbids U+0000 in every string: PostgreSQL's ``jsonb`` cannot hold it, so a
    PostgreSQL-backed Label Studio answers HTTP 500 to any import carrying it, every time.
    """
    if isinstance(value, str):
        return path if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if NUL in key:
                return where
            found = nul_path(item, where)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = nul_path(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def replace_nul(value: Any) -> tuple[Any, int]:
    """``value`` (plain JSON-like data) with every U+0000 in strings and keys made U+FFFD, and how many.

    The producer's way to keep the contract's "no U+0000" rule without losing the run.
    """
    if isinstance(value, str):
        count = value.count(NUL)
        return (value.replace(NUL, NUL_REPLACEMENT), count) if count else (value, 0)
    if isinstance(value, dict):
        total = 0
        out: dict[Any, Any] = {}
        for key, item in value.items():
            new_key, in_key = replace_nul(key) if isinstance(key, str) else (key, 0)
            out[new_key], in_item = replace_nul(item)
            total += in_key + in_item
        return out, total
    if isinstance(value, list | tuple):
        total = 0
        items = []
        for item in value:
            new_item, count = replace_nul(item)
            items.append(new_item)
            total += count
        return items, total
    return value, 0


def unsupported_kind_message(kind: str) -> str:
    """The one wording for an event of a kind this reader does not know (a newer producer's)."""
    return (
        f"unsupported kind {_short(kind)}; this reader understands {sorted(KNOWN_KINDS)} "
        "(upgrade the consumer to read newer kinds)"
    )


def strict_json(raw: bytes) -> Any:
    """UTF-8 JSON as the wire allows it (see :func:`_parse_json`), for every record type on the wire.

    Raises:
        EventDecodeError: ``not_utf8``, ``not_json``, or ``invalid`` for a duplicate key.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EventDecodeError(
            DecodeErrorReason.NOT_UTF8, f"the record is not UTF-8 (byte {exc.start}: {exc.reason})"
        ) from None
    return _parse_json(text, raw)


def _parse_json(text: str, raw: bytes) -> Any:
    """Strict JSON: unique keys, finite numbers, no lone surrogates, bounded nesting.

    Duplicate keys are refused rather than resolved: parsers disagree on which copy wins, and a
    record must mean the same to every reader of the topic.
    """
    try:
        obj = json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_constant=_not_finite,
            parse_float=_finite_float,
        )
    except _DuplicateKeyError as exc:
        raise EventDecodeError(DecodeErrorReason.INVALID, str(exc)) from None
    except RecursionError:
        raise EventDecodeError(DecodeErrorReason.NOT_JSON, "the record is nested too deeply") from None
    except ValueError as exc:
        raise EventDecodeError(DecodeErrorReason.NOT_JSON, f"the record is not JSON ({exc})") from None
    if _SURROGATE_ESCAPE.search(raw):  # rare: let the strict Rust parser refuse lone surrogates
        try:
            pydantic_core.from_json(raw, allow_inf_nan=False)
        except ValueError as exc:
            raise EventDecodeError(DecodeErrorReason.NOT_JSON, f"the record is not JSON ({exc})") from None
    return obj


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKeyError(key)
            seen.add(key)
    return obj


def _not_finite(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError(f"the number {_short(literal)} is out of range")
    return value


def describe_validation_error(exc: ValidationError) -> str:
    """A pydantic error as ``path: problem (got value)`` sentences, the first few of them."""
    errors = exc.errors(include_url=False)
    lines = [_describe(error) for error in errors[:_MAX_ERRORS_SHOWN]]
    if len(errors) > _MAX_ERRORS_SHOWN:
        lines.append(f"and {len(errors) - _MAX_ERRORS_SHOWN} more")
    return "; ".join(lines)


def _describe(error: Any) -> str:
    loc: Sequence[int | str] = error["loc"]
    if error["type"] in {"union_tag_not_found", "union_tag_invalid"}:
        given = error["input"].get("kind") if isinstance(error["input"], dict) else None
        got = f" (got {_short(given)})" if given is not None else " (it is missing)"
        return f"kind: must be one of {sorted(KNOWN_KINDS)}{got}"
    if loc and loc[0] in KNOWN_KINDS:
        loc = loc[1:]  # the discriminated-union tag, not a field
    path = _path(loc) or "event"
    message: str = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        return f"{path}: required field is missing"
    if error["type"].endswith("_type") or error["type"].endswith("_parsing") or "literal" in error["type"]:
        return f"{path}: {message} (got {_short(error['input'])})"
    return f"{path}: {message}"


def _path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("function-") or part.startswith("json-or-python"):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_INPUT_SHOWN else text[: _MAX_INPUT_SHOWN - 3] + "..."


def _json_type(value: object) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(
        type(value), "null"
    )


__all__ = [
    "CONTENT_TYPE",
    "HEADER_CONTENT_TYPE",
    "HEADER_SCHEMA_VERSION",
    "SCHEMA_VERSION",
    "DecodeErrorReason",
    "Event",
    "EventDecodeError",
    "decode",
    "describe_validation_error",
    "encode",
    "encode_plain",
    "event_headers",
    "event_key",
    "nul_path",
    "replace_nul",
    "run_key",
    "version_headers",
]

"""Dead letters keep the original record and add Kafka-Connect-style error headers."""

from __future__ import annotations

from dataclasses import dataclass, field

from labelstudio_ingest.consumer import deadletter as dl
from labelstudio_ingest.schemas import DecodeErrorReason, EventDecodeError


@dataclass
class Record:
    topic: str = "llm.interactions"
    partition: int = 2
    offset: int = 41
    key: bytes | None = b"run-1"
    value: bytes | None = b"not json"
    headers: list[tuple[str, bytes]] = field(default_factory=lambda: [("content-type", b"application/json")])
    timestamp: int = 1_700_000_000_000


def test_the_original_record_is_kept_and_the_reason_added() -> None:
    error = EventDecodeError(DecodeErrorReason.NOT_JSON, "the record is not JSON")
    failure = dl.Failure.of("not_json", dl.Stage.DECODE, error, error.detail)
    full, slim = dl.dead_letter(Record(), failure, topic="dlq", group_id="g")
    assert (full.topic, full.key, full.value, full.timestamp_ms) == (
        "dlq",
        b"run-1",
        b"not json",
        1_700_000_000_000,
    )
    headers = list(full.headers)
    assert headers[0] == ("content-type", b"application/json")
    assert dl.header(headers, dl.H_REASON) == "not_json"
    assert dl.header(headers, dl.H_STAGE) == "decode"
    assert dl.header(headers, dl.H_CLASS) == "labelstudio_ingest.schemas.wire.EventDecodeError"
    assert dl.header(headers, dl.H_MESSAGE) == "the record is not JSON"
    assert dl.header(headers, dl.H_TOPIC) == "llm.interactions"
    assert dl.header(headers, dl.H_PARTITION) == "2"
    assert dl.header(headers, dl.H_OFFSET) == "41"
    assert dl.header(headers, dl.H_GROUP) == "g"
    assert dl.header(headers, dl.H_TIME) is not None
    assert slim.value is None
    assert dl.header(list(slim.headers), dl.H_VALUE_OMITTED) == "8"


def test_a_replayed_dead_letter_gets_fresh_error_headers_only() -> None:
    record = Record(headers=[("content-type", b"x"), (dl.H_REASON, b"old"), (dl.H_STAGE, b"route")])
    failure = dl.Failure.of("invalid", dl.Stage.VALIDATE, ValueError("bad"))
    full, _ = dl.dead_letter(record, failure, topic="dlq", group_id="g")
    names = [name for name, _ in full.headers]
    assert names.count(dl.H_REASON) == 1
    assert dl.header(list(full.headers), dl.H_REASON) == "invalid"


def test_long_messages_are_cut() -> None:
    failure = dl.Failure.of("invalid", dl.Stage.VALIDATE, ValueError("x" * 100_000))
    full, _ = dl.dead_letter(Record(), failure, topic="dlq", group_id="g")
    assert len(dl.header(list(full.headers), dl.H_MESSAGE) or "") == dl.MAX_MESSAGE_CHARS


def test_a_record_without_key_or_value_is_dead_lettered_as_it_was() -> None:
    failure = dl.Failure.of("empty", dl.Stage.DECODE, ValueError("the record has no value"))
    full, _ = dl.dead_letter(Record(key=None, value=None, headers=[]), failure, topic="dlq", group_id="g")
    assert full.key is None
    assert full.value is None

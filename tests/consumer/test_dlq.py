"""``dlq inspect|replay`` without a broker: time parsing, filters, lines, JSON, replay headers, exit codes."""

from __future__ import annotations

import base64
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from labelstudio_ingest.consumer import deadletter as dl
from labelstudio_ingest.consumer.cli import main
from labelstudio_ingest.consumer.dlq import (
    REPLAY_OF,
    DeadLetter,
    Filter,
    as_json,
    line,
    parse_time,
    replay_headers,
    summary,
)
from labelstudio_ingest.consumer.dlq_cli import CONNECTION_FIELDS, split_replayable
from labelstudio_ingest.consumer.dlq_kafka import KafkaConnection
from labelstudio_ingest.consumer.settings import Settings
from tests.harness import free_port

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def letter(
    reason: str = "unknown_project",
    *,
    at: datetime = NOW,
    key: bytes | None = b"run-1",
    value: bytes | None = b'{"kind": "prompt"}',
    omitted: int | None = None,
    message: str = "project 987654 does not exist",
    offset: int = 7,
) -> DeadLetter:
    headers = [
        ("x-origin", b"test"),
        (dl.H_REASON, reason.encode()),
        (dl.H_STAGE, b"route"),
        (dl.H_CLASS, b"labelstudio_ingest.consumer.errors.UnknownProjectError"),
        (dl.H_MESSAGE, message.encode()),
        (dl.H_TOPIC, b"llm.interactions"),
        (dl.H_PARTITION, b"3"),
        (dl.H_OFFSET, b"42"),
        (dl.H_TIME, at.isoformat(timespec="milliseconds").encode()),
        (dl.H_GROUP, b"labelstudio-ingest"),
    ]
    if omitted is not None:
        headers.append((dl.H_VALUE_OMITTED, str(omitted).encode()))
    return DeadLetter("llm.interactions.dlq", 0, offset, key, value, headers, 1_000)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "LABEL_STUDIO_API_KEY", "INGEST_TOPIC", "INGEST_DLQ_TOPIC"):
        monkeypatch.delenv(name, raising=False)


# --- times and filters ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", NOW - timedelta(hours=2)),
        ("30m", NOW - timedelta(minutes=30)),
        ("7d", NOW - timedelta(days=7)),
        ("45s", NOW - timedelta(seconds=45)),
        ("1w", NOW - timedelta(weeks=1)),
        ("2026-02-01T10:00:00Z", datetime(2026, 2, 1, 10, tzinfo=UTC)),
        ("2026-02-01T10:00:00", datetime(2026, 2, 1, 10, tzinfo=UTC)),
        ("2026-02-01T12:00:00+02:00", datetime(2026, 2, 1, 10, tzinfo=UTC)),
        ("2026-02-01", datetime(2026, 2, 1, tzinfo=UTC)),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "2x", "-2h", ""])
def test_parse_time_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_time(text, NOW)


def test_filter_by_reason_and_window() -> None:
    old, new = letter(at=NOW - timedelta(hours=3)), letter("not_json", at=NOW)
    assert Filter().matches(old)
    assert Filter().matches(new)
    assert [x.reason for x in (old, new) if Filter(frozenset({"not_json"})).matches(x)] == ["not_json"]
    since = Filter(since=NOW - timedelta(hours=1))
    assert (since.matches(old), since.matches(new)) == (False, True)
    until = Filter(until=NOW - timedelta(hours=1))
    assert (until.matches(old), until.matches(new)) == (True, False)


def test_time_falls_back_to_the_record_timestamp() -> None:
    bare = DeadLetter("t.dlq", 0, 0, None, b"x", [], 1_700_000_000_000)
    assert bare.time == datetime.fromtimestamp(1_700_000_000, UTC)
    assert bare.reason == "unknown"
    assert bare.source == "?/?/?"
    assert not Filter(since=NOW).matches(DeadLetter("t.dlq", 0, 0, None, b"x", [], None))


# --- output ---------------------------------------------------------------------------------------
def test_line_is_readable_and_short() -> None:
    text = line(letter(message="bad\nthing " + "x" * 500))
    assert "\n" not in text
    assert text.startswith(
        "2026-03-01T12:00:00.000Z llm.interactions/3/42 unknown_project stage=route key=run-1"
    )
    assert text.endswith("...")
    assert len(text) < 300
    assert "key=base64:" + base64.b64encode(b"\xff\x00").decode() in line(letter(key=b"\xff\x00"))
    assert "key=-" in line(letter(key=None))
    assert "value-omitted(900 bytes)" in line(letter(omitted=900, value=None))


def test_json_decodes_headers_and_value() -> None:
    data = as_json(letter())
    assert json.loads(json.dumps(data)) == data
    assert data["dlq"] == "llm.interactions.dlq/0/7"
    assert (data["reason"], data["stage"], data["source"]) == (
        "unknown_project",
        "route",
        "llm.interactions/3/42",
    )
    assert (data["key"], data["value"], data["value_encoding"]) == ("run-1", '{"kind": "prompt"}', "utf-8")
    assert ["x-origin", "test"] in data["headers"]
    assert [dl.H_REASON, "unknown_project"] in data["headers"]
    binary = as_json(letter(value=b"\xff\xfe"))
    assert (binary["value"], binary["value_encoding"]) == (base64.b64encode(b"\xff\xfe").decode(), "base64")
    assert as_json(letter(value=None))["value"] is None


def test_summary() -> None:
    assert (
        summary(Counter({"not_json": 1, "invalid": 2}), "found")
        == "3 dead letters found: invalid=2, not_json=1"
    )
    assert summary(Counter(), "found") == "0 dead letters found"
    assert summary(Counter({"empty": 1}), "replayed") == "1 dead letter replayed: empty=1"


# --- replay ---------------------------------------------------------------------------------------
def test_replay_headers_strip_errors_and_say_where_from() -> None:
    once = letter(offset=7)
    headers = replay_headers(once)
    assert headers == [("x-origin", b"test"), (REPLAY_OF, b"llm.interactions.dlq/0/7")]
    # dead-lettered again after a replay, then replayed again: one ingest.replay.of, the newest
    again = DeadLetter(
        "llm.interactions.dlq", 1, 9, once.key, once.value, [*headers, *once.headers[1:]], None
    )
    assert replay_headers(again) == [("x-origin", b"test"), (REPLAY_OF, b"llm.interactions.dlq/1/9")]


def test_value_omitted_dead_letters_are_not_replayable() -> None:
    good, slim = letter(offset=1), letter(offset=2, value=None, omitted=2_000_000)
    assert split_replayable([good, slim]) == ([good], [slim])


# --- the command ----------------------------------------------------------------------------------
def test_connection_fields_are_settings_fields() -> None:
    assert set(CONNECTION_FIELDS) == set(KafkaConnection.model_fields)
    for name in CONNECTION_FIELDS:
        assert (
            KafkaConnection.model_fields[name].validation_alias
            == Settings.model_fields[name].validation_alias
        )


def test_connection_needs_no_label_studio_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    monkeypatch.setenv("INGEST_TOPIC", "events")
    conn = KafkaConnection()
    assert (conn.bootstrap_servers, conn.dlq) == ("127.0.0.1:9092", "events.dlq")
    assert KafkaConnection(INGEST_DLQ_TOPIC="elsewhere").dlq == "elsewhere"
    assert conn.kafka_security() == {"security_protocol": "PLAINTEXT"}


def test_connection_passes_sasl_options() -> None:
    conn = KafkaConnection(
        KAFKA_BOOTSTRAP_SERVERS="b:9093",
        KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
        KAFKA_SASL_USERNAME="u",
        KAFKA_SASL_PASSWORD="p",
    )
    assert conn.kafka_security()["sasl_plain_password"] == "p"
    assert conn.secrets() == ["p"]


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["dlq", "inspect"], "KAFKA_BOOTSTRAP_SERVERS (--kafka-bootstrap-servers) is required but not set"),
        (["dlq", "inspect", "--kafka-bootstrap-servers", "nohost"], "'nohost' is not host:port"),
        (["dlq", "inspect", "--kafka-bootstrap-servers", "h:1", "--since", "soon"], "--since: 'soon'"),
        (["dlq", "replay", "--kafka-bootstrap-servers", "h:1", "--limit", "0"], "--limit must be a positive"),
        (
            ["dlq", "replay", "--kafka-bootstrap-servers", "h:1", "--timeout", "x"],
            "--timeout must be a positive",
        ),
        (
            ["dlq", "replay", "--kafka-bootstrap-servers", "h:1", "--to", "llm.interactions.dlq"],
            "--to must not be the dead-letter topic llm.interactions.dlq",
        ),
        (
            ["dlq", "inspect", "--kafka-bootstrap-servers", "h:1", "--since", "1h", "--until", "2h"],
            "--since must be before --until",
        ),
        (
            ["dlq", "replay", "--kafka-bootstrap-servers", "h:1", "--kafka-security-protocol", "SASL_SSL"],
            "needs KAFKA_SASL_MECHANISM",
        ),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert error in captured.err
    assert len(captured.err.strip().splitlines()) == 1


@pytest.mark.parametrize("action", ["inspect", "replay"])
def test_unreachable_kafka_exits_1(action: str, capsys: pytest.CaptureFixture[str]) -> None:
    closed = f"127.0.0.1:{free_port()}"
    assert main(["dlq", action, "--kafka-bootstrap-servers", closed, "--timeout", "1"]) == 1
    err = capsys.readouterr().err
    assert f"cannot reach Kafka at {closed}" in err
    assert len(err.strip().splitlines()) == 1


def test_from_record_reads_a_consumer_record() -> None:
    record = SimpleNamespace(
        topic="t.dlq", partition=2, offset=5, key=b"k", value=b"v", headers=[("a", b"b")], timestamp=-1
    )
    got = DeadLetter.from_record(record)
    assert (got.ref, got.key, got.value, got.headers, got.timestamp_ms) == (
        "t.dlq/2/5",
        b"k",
        b"v",
        [("a", b"b")],
        None,
    )

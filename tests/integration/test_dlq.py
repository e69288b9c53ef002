"""``labelstudio-ingest dlq inspect|replay`` against a real broker, and replay through a real consumer."""

from __future__ import annotations

import json
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from labelstudio_ingest.consumer import deadletter as dl
from labelstudio_ingest.consumer.cli import main
from labelstudio_ingest.consumer.dlq import REPLAY_OF
from labelstudio_ingest.consumer.labelconfig import default_config
from labelstudio_ingest.schemas import Target
from tests.consumer.runner import (
    Rig,
    eventually,
    project_titled,
    prompt_event,
    read_topic,
    run_ids_of,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def rig_partitions() -> int:
    return 2


def dlq(capsys: pytest.CaptureFixture[str], bootstrap: str, topic: str, *argv: str) -> tuple[int, str, str]:
    """Run ``labelstudio-ingest dlq ...`` for ``topic`` (dead letters in ``<topic>.dlq``)."""
    capsys.readouterr()
    code = main(["dlq", *argv, "--kafka-bootstrap-servers", bootstrap, "--topic", topic, "--timeout", "10"])
    out, err = capsys.readouterr()
    return code, out, err


def end_offset(bootstrap: str, topic: str) -> int:
    """Records ever written to ``topic`` (all partitions)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def error_headers(reason: str, at: str, *, offset: int = 0) -> list[tuple[str, bytes]]:
    return [
        ("x-origin", b"test"),
        (dl.H_REASON, reason.encode()),
        (dl.H_STAGE, b"decode"),
        (dl.H_CLASS, b"labelstudio_ingest.schemas.wire.EventDecodeError"),
        (dl.H_MESSAGE, f"{reason}: something is wrong".encode()),
        (dl.H_TOPIC, b"input"),
        (dl.H_PARTITION, b"0"),
        (dl.H_OFFSET, str(offset).encode()),
        (dl.H_TIME, at.encode()),
        (dl.H_GROUP, b"g"),
    ]


def create_topics(admin: KafkaAdminClient, *names: str) -> None:
    admin.create_topics(
        {name: {"num_partitions": 1, "replication_factor": 1} for name in names}, wait_for_metadata=True
    )


@pytest.fixture
def seeded(rig: Rig, kafka_admin: KafkaAdminClient) -> Rig:
    """Five hand-made dead letters in ``<topic>.dlq``: three days, four reasons, one without its value."""
    dead = f"{rig.topic}.dlq"
    create_topics(kafka_admin, dead, f"{rig.topic}.other")
    publish = rig.publisher.raw
    publish(dead, b"{not json", key=b"k1", headers=error_headers("not_json", "2026-01-01T10:00:00.000+00:00"))
    publish(
        dead,
        b"\xff\xfe",
        key=b"k2",
        headers=error_headers("not_utf8", "2026-01-02T10:00:00.000+00:00", offset=1),
    )
    publish(
        dead, b"{}", key=b"k3", headers=error_headers("not_json", "2026-01-03T10:00:00.000+00:00", offset=2)
    )
    publish(
        dead, b"{}", key=b"k4", headers=error_headers("invalid", "2026-01-03T11:00:00.000+00:00", offset=3)
    )
    omitted = [
        *error_headers("oversized", "2026-01-03T12:00:00.000+00:00", offset=4),
        (dl.H_VALUE_OMITTED, b"9999"),
    ]
    publish(dead, None, key=b"k5", headers=omitted)
    read_topic(rig.bootstrap, dead, expect=5)
    return rig


def test_inspect_lists_filters_and_counts(seeded: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = dlq(capsys, seeded.bootstrap, seeded.topic, "inspect")
    assert (code, err) == (0, "")
    lines = out.strip().splitlines()
    assert len(lines) == 6
    assert lines[0].startswith("2026-01-01T10:00:00.000Z input/0/0 not_json stage=decode key=k1")
    assert "not_json: something is wrong" in lines[0]
    assert "value-omitted(9999 bytes)" in lines[4]
    assert lines[5] == (
        f"5 dead letters in {seeded.topic}.dlq: invalid=1, not_json=2, not_utf8=1, oversized=1"
    )

    _, out, _ = dlq(
        capsys, seeded.bootstrap, seeded.topic, "inspect", "--reason", "not_json", "--reason", "invalid"
    )
    assert out.strip().splitlines()[-1].endswith(": invalid=1, not_json=2")

    since = "2026-01-02T00:00:00Z"
    _, out, _ = dlq(
        capsys, seeded.bootstrap, seeded.topic, "inspect", "--since", since, "--until", "2026-01-03T10:30"
    )
    assert [x.split()[4] for x in out.strip().splitlines()[:-1]] == ["key=k2", "key=k3"]
    assert out.strip().splitlines()[-1].endswith(": not_json=1, not_utf8=1")

    _, out, _ = dlq(capsys, seeded.bootstrap, seeded.topic, "inspect", "--limit", "2")
    assert out.strip().splitlines()[-1].endswith(": not_json=1, not_utf8=1")

    _, out, _ = dlq(capsys, seeded.bootstrap, seeded.topic, "inspect", "--since", "1h")
    assert out.strip() == f"0 dead letters in {seeded.topic}.dlq"


def test_inspect_json(seeded: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = dlq(capsys, seeded.bootstrap, seeded.topic, "inspect", "--json", "--reason", "not_utf8")
    assert code == 0
    (only,) = [json.loads(x) for x in out.strip().splitlines()]
    assert (only["key"], only["value"], only["value_encoding"]) == ("k2", "//4=", "base64")
    assert (only["reason"], only["stage"], only["source"]) == ("not_utf8", "decode", "input/0/1")
    assert only["time"] == "2026-01-02T10:00:00+00:00"
    assert ["x-origin", "test"] in only["headers"]
    assert [dl.H_GROUP, "g"] in only["headers"]
    assert err.strip() == f"1 dead letter in {seeded.topic}.dlq: not_utf8=1"


def test_replay_dry_run_sends_nothing(seeded: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = dlq(capsys, seeded.bootstrap, seeded.topic, "replay", "--dry-run")
    assert code == 0
    assert "skipped (value omitted, cannot be replayed): 2026-01-03T12:00:00.000Z" in out
    assert "4 dead letters would be replayed to" in out
    assert "1 dead letter skipped (value omitted): oversized=1" in out
    assert end_offset(seeded.bootstrap, seeded.topic) == 0


def test_replay_republishes_originals(seeded: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = dlq(
        capsys, seeded.bootstrap, seeded.topic, "replay", "--reason", "not_json", "--reason", "oversized"
    )
    assert code == 0
    assert f"2 dead letters replayed to {seeded.topic}: not_json=2" in out
    assert "1 dead letter skipped (value omitted): oversized=1" in out
    replayed = sorted(read_topic(seeded.bootstrap, seeded.topic, expect=2), key=lambda r: r.key)
    assert [(r.key, r.value) for r in replayed] == [(b"k1", b"{not json"), (b"k3", b"{}")]
    dead_offsets = {r.key: r.offset for r in read_topic(seeded.bootstrap, f"{seeded.topic}.dlq", expect=5)}
    for record in replayed:
        assert list(record.headers) == [
            ("x-origin", b"test"),
            (REPLAY_OF, f"{seeded.topic}.dlq/0/{dead_offsets[record.key]}".encode()),
        ]

    code, out, _ = dlq(
        capsys, seeded.bootstrap, seeded.topic, "replay", "--to", f"{seeded.topic}.other", "--limit", "1"
    )
    assert (code, out.strip()) == (0, f"1 dead letter replayed to {seeded.topic}.other: not_json=1")
    assert [r.key for r in read_topic(seeded.bootstrap, f"{seeded.topic}.other", expect=1)] == [b"k1"]


def one_batch(
    bootstrap: str, topic: str, records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]]
) -> None:
    """Publish ``records`` as ONE record batch: a long linger and a single flush."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=60_000)
    try:
        futures = [producer.send(topic, key=k, value=v, headers=h, partition=0) for k, v, h in records]
        producer.flush(timeout=30)
        offsets = [future.get(timeout=30).offset for future in futures]
    finally:
        producer.close()
    assert offsets == list(range(offsets[0], offsets[0] + len(records)))


def batch_of_bad_json(count: int) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    at = "2026-01-01T10:00:{:02d}.000+00:00"
    return [
        (f"k{i}".encode(), b"{not json", error_headers("not_json", at.format(i), offset=i))
        for i in range(count)
    ]


def test_inspect_lists_every_record_of_the_last_batch(
    rig: Rig, kafka_admin: KafkaAdminClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """tansu 0.6 reports the end offset as the last batch's base offset + 1; the rest of it still counts.

    Six dead letters in one batch: before the fix, ``dlq inspect`` stopped at the end offset (1) and
    listed one of them.
    """
    dead = f"{rig.topic}.dlq"
    create_topics(kafka_admin, dead)
    one_batch(rig.bootstrap, dead, batch_of_bad_json(6))
    code, out, err = dlq(capsys, rig.bootstrap, rig.topic, "inspect")
    assert (code, err) == (0, "")
    lines = out.strip().splitlines()
    assert [x.split()[4] for x in lines[:-1]] == [f"key=k{i}" for i in range(6)]
    assert lines[-1] == f"6 dead letters in {dead}: not_json=6"


def test_replaying_letters_that_fail_again_does_not_loop(
    rig: Rig, kafka_admin: KafkaAdminClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """Replayed records that fail again land back in the dead-letter topic; each replay sends each once.

    The reader's target is fixed before anything is replayed, so a replay ends and never re-reads its
    own failures; the next replay sees them (and the originals) as ordinary dead letters.
    """
    dead = f"{rig.topic}.dlq"
    create_topics(kafka_admin, dead)
    one_batch(rig.bootstrap, dead, batch_of_bad_json(4))
    consumer = rig.consumer()
    consumer.start().wait_ready()
    try:
        code, out, _ = dlq(capsys, rig.bootstrap, rig.topic, "replay")
        assert (code, out.strip()) == (0, f"4 dead letters replayed to {rig.topic}: not_json=4")
        replayed = read_topic(rig.bootstrap, rig.topic, expect=4)
        assert sorted(dict(r.headers)[REPLAY_OF] for r in replayed) == [
            f"{dead}/0/{offset}".encode() for offset in range(4)
        ]
        read_topic(rig.bootstrap, dead, expect=8)  # the consumer dead-lettered every replayed record again

        code, out, _ = dlq(capsys, rig.bootstrap, rig.topic, "replay")
        assert (code, out.strip()) == (0, f"8 dead letters replayed to {rig.topic}: not_json=8")
        assert len(read_topic(rig.bootstrap, rig.topic, expect=12)) == 12
        read_topic(rig.bootstrap, dead, expect=16)
        assert consumer.terminate() == 0
    finally:
        consumer.kill()


def test_missing_dead_letter_topic_is_empty(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = dlq(capsys, rig.bootstrap, f"{rig.topic}.nothing-here", "inspect")
    assert (code, out.strip()) == (0, f"0 dead letters in {rig.topic}.nothing-here.dlq")


def test_replay_after_a_fix_imports_once(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    """Dead letters for a missing project are replayed after it is created; replaying twice adds nothing."""
    ls_client, bootstrap, topic = rig.ls_client, rig.bootstrap, rig.topic
    stem = uuid.uuid4().hex[:10]
    good_title, missing_title = f"dlq-good-{stem}", f"dlq-missing-{stem}"
    good_project = ls_client.projects.create(title=good_title, label_config=default_config("prompt"))
    good = [prompt_event(target=Target(project_name=good_title)) for _ in range(3)]
    stranded = [prompt_event(target=Target(project_name=missing_title)) for _ in range(3)]
    rig.publisher.events(topic, [good[0], stranded[0], good[1], stranded[1], good[2], stranded[2]])

    consumer = rig.consumer(INGEST_ALLOW_CREATE_PROJECTS="false", INGEST_PROJECT_CACHE_TTL_S="0")
    consumer.start().wait_ready()
    try:
        eventually(lambda: len(run_ids_of(ls_client, good_project.id)) == 3, message="good tasks")
        read_topic(bootstrap, f"{topic}.dlq", expect=3)
        code, out, _ = dlq(capsys, bootstrap, topic, "inspect")
        assert code == 0
        assert out.strip().splitlines()[-1] == f"3 dead letters in {topic}.dlq: unknown_project=3"
        assert "creating projects is disabled" in out

        # the fix: the project exists now
        fixed = ls_client.projects.create(title=missing_title, label_config=default_config("prompt"))
        code, out, _ = dlq(capsys, bootstrap, topic, "replay", "--reason", "unknown_project")
        assert (code, out.strip()) == (0, f"3 dead letters replayed to {topic}: unknown_project=3")
        want = sorted(str(e.run_id) for e in stranded)
        eventually(lambda: sorted(run_ids_of(ls_client, fixed.id)) == want, message="replayed runs imported")

        # replay again: the consumer already imported these runs and skips them
        duplicates_before = consumer.metric("ingest_duplicates_skipped_total")
        code, out, _ = dlq(capsys, bootstrap, topic, "replay", "--reason", "unknown_project")
        assert (code, out.strip()) == (0, f"3 dead letters replayed to {topic}: unknown_project=3")
        eventually(
            lambda: consumer.metric("ingest_duplicates_skipped_total") >= duplicates_before + 3,
            message="second replay seen as duplicates",
        )
        assert sorted(run_ids_of(ls_client, fixed.id)) == want
        assert len(run_ids_of(ls_client, good_project.id)) == 3
        assert end_offset(bootstrap, f"{topic}.dlq") == 3  # nothing dead-lettered again
        assert project_titled(ls_client, missing_title).id == fixed.id
        assert consumer.terminate() == 0
    finally:
        consumer.kill()

"""The consumer end to end against a real broker and a real Label Studio: modes, dedup, dead letters."""

from __future__ import annotations

import uuid

import pytest

from labelstudio_ingest.consumer import deadletter as dl
from labelstudio_ingest.consumer.labelconfig import default_config
from labelstudio_ingest.consumer.tasks import PREDICTION_MODEL_VERSION
from labelstudio_ingest.schemas import Target, encode
from tests.consumer.runner import (
    ConsumerProcess,
    Rig,
    chat_event,
    eventually,
    project_titled,
    prompt_event,
    read_topic,
    run_ids_of,
    tasks_of,
)
from tests.label_configs import CUSTOM_CONFIG, NO_TEXTAREA

pytestmark = pytest.mark.integration

NEEDS_MORE_DATA = (
    '<View><Text name="prompt" value="$prompt"/><Text name="ctx" value="$context"/>'
    '<TextArea name="response" toName="prompt"/></View>'
)
"""A config Label Studio accepts but whose tasks it refuses (400): they lack ``data.context``."""


def title(kind: str) -> str:
    return f"it-{kind}-{uuid.uuid4().hex[:10]}"


def test_prompt_chat_and_custom_config_end_to_end(rig: Rig, consumer: ConsumerProcess) -> None:
    publisher, topic, ls_client = rig.publisher, rig.topic, rig.ls_client
    prompt_title, chat_title, custom_title = title("prompt"), title("chat"), title("custom")
    batch_run = prompt_event(
        target=Target(project_name=prompt_title), prompts=["2+2?", "3+3?"], answer="some answer"
    )
    chat_run = chat_event(target=Target(project_name=chat_title, mode="chat"))
    custom_run = prompt_event(target=Target(project_name=custom_title, project_config=CUSTOM_CONFIG))
    publisher.events(topic, [batch_run, chat_run, custom_run])

    consumer.start().wait_ready()
    projects = eventually(
        lambda: (
            all(project_titled(ls_client, t) for t in (prompt_title, chat_title, custom_title))
            and [project_titled(ls_client, t) for t in (prompt_title, chat_title, custom_title)]
        ),
        message="three projects",
    )
    prompt_project, chat_project, custom_project = projects
    eventually(lambda: len(tasks_of(ls_client, prompt_project.id)) == 2, message="prompt tasks")
    eventually(lambda: len(tasks_of(ls_client, chat_project.id)) == 1, message="chat task")
    eventually(lambda: len(tasks_of(ls_client, custom_project.id)) == 1, message="custom task")

    prompt_tasks = sorted(tasks_of(ls_client, prompt_project.id), key=lambda t: t.data["prompt_index"])
    assert [t.data["prompt"] for t in prompt_tasks] == ["2+2?", "3+3?"]
    assert {t.data["run_id"] for t in prompt_tasks} == {str(batch_run.run_id)}
    (prediction,) = prompt_tasks[0].predictions
    assert prediction.model_version == PREDICTION_MODEL_VERSION
    assert prompt_tasks[0].meta["model_name"] == "fake-llm"
    (result,) = prediction.result
    assert (result["from_name"], result["to_name"], result["type"]) == ("response", "prompt", "textarea")
    assert result["value"]["text"] == ["some answer (0)"]
    assert (
        ls_client.projects.get(id=prompt_project.id).label_config.strip() == default_config("prompt").strip()
    )

    (chat_task,) = tasks_of(ls_client, chat_project.id)
    assert chat_task.data["prompt"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert chat_task.predictions[0].result[0]["to_name"] == "dialogue"

    (custom_task,) = tasks_of(ls_client, custom_project.id)
    assert custom_task.data["run_id"] == str(custom_run.run_id)
    assert "user_feedback" in ls_client.projects.get(id=custom_project.id).label_config

    assert consumer.metric("ingest_projects_created_total") == 3
    assert consumer.metric("ingest_tasks_imported_total", project_id=str(prompt_project.id)) == 2
    assert consumer.metric("ingest_events_valid_total") == 3
    assert consumer.terminate() == 0


def test_the_same_run_published_50_times_is_one_task(rig: Rig, consumer: ConsumerProcess) -> None:
    publisher, topic, ls_client = rig.publisher, rig.topic, rig.ls_client
    target = Target(project_name=title("dedup"))
    run_id = uuid.uuid4()
    publisher.events(topic, [prompt_event(target=target, run_id=run_id) for _ in range(50)])
    consumer.start().wait_ready()
    project = eventually(lambda: project_titled(ls_client, target.project_name or ""), message="project")
    eventually(lambda: run_ids_of(ls_client, project.id), message="first task")

    # hours later (as far as the consumer can tell): more copies, after a restart too
    marker = prompt_event(target=target)
    publisher.events(topic, [*(prompt_event(target=target, run_id=run_id) for _ in range(10)), marker])
    eventually(lambda: str(marker.run_id) in run_ids_of(ls_client, project.id), message="marker task")
    assert consumer.terminate() == 0

    second_marker = prompt_event(target=target)
    publisher.events(topic, [*(prompt_event(target=target, run_id=run_id) for _ in range(5)), second_marker])
    consumer.start().wait_ready()
    eventually(
        lambda: str(second_marker.run_id) in run_ids_of(ls_client, project.id), message="second marker"
    )
    assert sorted(run_ids_of(ls_client, project.id)) == sorted(
        [str(run_id), str(marker.run_id), str(second_marker.run_id)]
    )
    assert consumer.metric("ingest_duplicates_skipped_total", source="ledger") == 5
    assert consumer.terminate() == 0


def test_every_bad_input_class_is_dead_lettered_with_its_headers(rig: Rig) -> None:
    publisher, topic, ls_client, kafka_bootstrap = rig.publisher, rig.topic, rig.ls_client, rig.bootstrap
    consumer = rig.consumer(INGEST_MAX_EVENT_BYTES="20000")
    good_target = Target(project_name=title("good"))
    good = prompt_event(target=good_target)
    oversized = prompt_event(target=good_target, prompts=["x" * 30_000])
    unknown_project = prompt_event(target=Target(project_id=987_654))
    no_textarea = prompt_event(target=Target(project_name=title("notextarea"), project_config=NO_TEXTAREA))
    rejected = prompt_event(target=Target(project_name=title("rejected"), project_config=NEEDS_MORE_DATA))
    original_headers = [("x-origin", b"test"), ("content-type", b"application/json")]
    raw_cases = {
        b"bad-json": (b"{not json", ("not_json", "decode")),
        b"bad-utf8": (b"\xff\xfe\xfd", ("not_utf8", "decode")),
        b"bad-empty": (b"", ("empty", "decode")),
        b"bad-version": (
            b'{"schema_version": 2, "kind": "prompt"}',
            ("unsupported_schema_version", "validate"),
        ),
        b"bad-invalid": (b'{"schema_version": 1, "kind": "prompt", "prompts": []}', ("invalid", "validate")),
    }
    for key, (value, _) in raw_cases.items():
        publisher.raw(topic, value, key=key, headers=original_headers)
    publisher.events(topic, [oversized, unknown_project, no_textarea, rejected, good])
    event_cases = {
        str(oversized.run_id).encode(): ("oversized", "validate"),
        str(unknown_project.run_id).encode(): ("unknown_project", "route"),
        str(no_textarea.run_id).encode(): ("label_config", "route"),
        str(rejected.run_id).encode(): ("import_rejected", "import"),
    }
    expected = {**{k: v for k, (_, v) in raw_cases.items()}, **event_cases}

    consumer.start().wait_ready()
    try:
        project = eventually(
            lambda: project_titled(ls_client, good_target.project_name or ""), message="project"
        )
        eventually(lambda: run_ids_of(ls_client, project.id) == [str(good.run_id)], message="the good task")
        dead = read_topic(kafka_bootstrap, f"{topic}.dlq", expect=len(expected))
        originals = {r.key: r for r in read_topic(kafka_bootstrap, topic, expect=len(expected) + 1)}

        assert sorted(r.key for r in dead) == sorted(expected)
        for record in dead:
            headers = list(record.headers)
            reason, stage = expected[record.key]
            original = originals[record.key]
            assert (dl.header(headers, dl.H_REASON), dl.header(headers, dl.H_STAGE)) == (reason, stage)
            assert record.value == original.value
            assert [h for h in headers if not h[0].startswith(dl.PREFIX)] == list(original.headers)
            assert dl.header(headers, dl.H_TOPIC) == topic
            assert dl.header(headers, dl.H_PARTITION) == str(original.partition)
            assert dl.header(headers, dl.H_OFFSET) == str(original.offset)
            assert dl.header(headers, dl.H_CLASS)
            assert dl.header(headers, dl.H_MESSAGE)
            assert dl.header(headers, dl.H_TIME)
        by_key = {r.key: r for r in dead}
        assert "987654" in (
            dl.header(list(by_key[str(unknown_project.run_id).encode()].headers), dl.H_MESSAGE) or ""
        )
        assert "context" in (
            dl.header(list(by_key[str(rejected.run_id).encode()].headers), dl.H_MESSAGE) or ""
        )
        assert len(by_key[str(oversized.run_id).encode()].value) == len(encode(oversized))

        for reason, _stage in expected.values():
            assert consumer.metric("ingest_events_dead_lettered_total", reason=reason) >= 1
        assert consumer.metric("ingest_events_consumed_total") == len(expected) + 1
        assert consumer.terminate() == 0
    finally:
        consumer.kill()

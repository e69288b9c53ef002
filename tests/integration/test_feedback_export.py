"""``labelstudio-ingest export`` on a real Label Studio: tasks made by the consumer, annotated via the API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from labelstudio_ingest.schemas import Target
from tests.consumer.runner import (
    ConsumerProcess,
    Rig,
    chat_event,
    eventually,
    project_titled,
    prompt_event,
    tasks_of,
)
from tests.label_configs import CUSTOM_CONFIG

pytestmark = pytest.mark.integration

PROMPTS = ["What is 2+2?", "Capital of Italy?", "Spell cat.", "Largest ocean?"]


def textarea(text: str, to: str = "prompt") -> dict[str, Any]:
    return {"from_name": "response", "to_name": to, "type": "textarea", "value": {"text": [text]}}


def rating(stars: int) -> dict[str, Any]:
    return {"from_name": "rating", "to_name": "prompt", "type": "rating", "value": {"rating": stars}}


def sentiment(value: str) -> dict[str, Any]:
    return {"from_name": "sentiment", "to_name": "prompt", "type": "choices", "value": {"choices": [value]}}


def run_export(rig: Rig, *args: str) -> tuple[list[dict[str, Any]], str]:
    """Run the CLI as a user would; return the records written and stderr."""
    out = rig.tmp_path / f"export-{uuid.uuid4().hex[:6]}.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INGEST_", "KAFKA_", "LABEL_STUDIO_"))}
    env.update(LABEL_STUDIO_URL=rig.label_studio.url, LABEL_STUDIO_API_KEY=rig.label_studio.api_key)
    done = subprocess.run(
        [sys.executable, "-m", "labelstudio_ingest.consumer.cli", "export", "--out", str(out), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert rig.label_studio.api_key not in done.stderr
    lines = out.read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines], done.stderr


def test_export_formats_incremental_and_skips(rig: Rig, consumer: ConsumerProcess) -> None:
    client = rig.ls_client
    title, chat_title = f"fb-export-{uuid.uuid4().hex[:8]}", f"fb-export-chat-{uuid.uuid4().hex[:8]}"
    run = prompt_event(
        target=Target(project_name=title, project_config=CUSTOM_CONFIG), prompts=PROMPTS, answer="model"
    )
    chat = chat_event(target=Target(project_name=chat_title, mode="chat"))
    rig.publisher.events(rig.topic, [run, chat])
    consumer.start().wait_ready()
    project = eventually(lambda: project_titled(client, title), message="project")
    chat_project = eventually(lambda: project_titled(client, chat_title), message="chat project")
    eventually(lambda: len(tasks_of(client, project.id)) == 4, message="four tasks")
    eventually(lambda: len(tasks_of(client, chat_project.id)) == 1, message="chat task")
    tasks = {t.data["prompt_index"]: t for t in tasks_of(client, project.id)}
    (chat_task,) = tasks_of(client, chat_project.id)

    # task 0 corrected, rated 4, Positive; task 1 kept as is, rated 2; task 2 cancelled; task 3 untouched
    first = client.annotations.create(
        id=tasks[0].id, result=[textarea("4"), rating(4), sentiment("Positive")]
    )
    client.annotations.create(
        id=tasks[1].id, result=[textarea("model (1)"), rating(2), sentiment("Negative")]
    )
    client.annotations.create(id=tasks[2].id, result=[], was_cancelled=True)
    client.annotations.create(id=chat_task.id, result=[textarea("Paris, France.", to="dialogue")])

    records, stderr = run_export(rig, "--project", title, "--format", "sft")
    assert sorted(records, key=lambda r: r["messages"][0]["content"]) == [
        {
            "messages": [
                {"role": "user", "content": "Capital of Italy?"},
                {"role": "assistant", "content": "model (1)"},
            ]
        },
        {"messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]},
    ]
    assert "4 tasks read, 2 exported; skipped: cancelled 1, not_annotated 1" in stderr

    records, _ = run_export(rig, "--project", title, "--format", "sft", "--since", "1h")
    assert len(records) == 2
    records, stderr = run_export(
        rig, "--project", title, "--format", "sft", "--since", "2099-01-01T00:00:00Z"
    )
    assert records == []
    assert "0 tasks read, 0 exported" in stderr  # Label Studio filtered them out already

    records, stderr = run_export(rig, "--project", str(project.id), "--format", "preference")
    assert records == [{"prompt": "What is 2+2?", "chosen": "4", "rejected": "model (0)"}]
    assert "skipped: cancelled 1, not_annotated 1, unchanged 1" in stderr

    records, _ = run_export(rig, "--project", title, "--format", "reward", "--include-metadata")
    by_prompt = {r["prompt"]: r for r in records}
    assert set(by_prompt) == {"What is 2+2?", "Capital of Italy?"}
    top = by_prompt["What is 2+2?"]
    assert {k: v for k, v in top.items() if k != "metadata"} == {
        "prompt": "What is 2+2?",
        "response": "model (0)",
        "rating": 0.8,
        "choices": {"sentiment": ["Positive"]},
    }
    assert top["metadata"]["run_id"] == str(run.run_id)
    assert top["metadata"]["task_id"] == tasks[0].id
    assert top["metadata"]["annotation_id"] == first.id
    assert top["metadata"]["ratings"] == {"rating": {"raw": 4.0, "max": 5, "scaled": 0.8}}
    assert by_prompt["Capital of Italy?"]["rating"] == 0.4

    records, _ = run_export(rig, "--project", chat_title, "--format", "preference")
    assert records == [
        {
            "prompt": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Capital of France?"},
            ],
            "chosen": [{"role": "assistant", "content": "Paris, France."}],
            "rejected": [{"role": "assistant", "content": "Paris."}],
        }
    ]
    records, _ = run_export(rig, "--project", chat_title, "--format", "sft")
    assert records == [
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Capital of France?"},
                {"role": "assistant", "content": "Paris, France."},
            ]
        }
    ]

    # incremental: the first run takes everything, the next only what changed since
    state = rig.tmp_path / "sft.state.json"
    incremental = ("--project", title, "--format", "sft", "--incremental", "--state", str(state))
    records, _ = run_export(rig, *incremental)
    assert len(records) == 2
    records, stderr = run_export(rig, *incremental)
    assert records == []
    assert "already_exported 2" in stderr
    client.annotations.create(id=tasks[3].id, result=[textarea("Pacific.")])
    client.annotations.update(id=first.id, result=[textarea("Four."), rating(5), sentiment("Positive")])
    records, _ = run_export(rig, *incremental)
    assert sorted(r["messages"][-1]["content"] for r in records) == ["Four.", "Pacific."]
    records, _ = run_export(rig, *incremental)
    assert records == []
    assert json.loads(Path(state).read_text())["project_id"] == project.id


def test_export_refuses_unknown_and_ambiguous_projects(rig: Rig) -> None:
    client = rig.ls_client
    title = f"fb-twice-{uuid.uuid4().hex[:8]}"
    ids = [client.projects.create(title=title, label_config=CUSTOM_CONFIG).id for _ in range(2)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INGEST_", "KAFKA_", "LABEL_STUDIO_"))}
    env.update(LABEL_STUDIO_URL=rig.label_studio.url, LABEL_STUDIO_API_KEY=rig.label_studio.api_key)
    base = [sys.executable, "-m", "labelstudio_ingest.consumer.cli", "export", "--format", "sft"]
    out = ["--out", str(rig.tmp_path / "x.jsonl")]
    done = subprocess.run(
        [*base, *out, "--project", title], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert f"2 projects are titled {title!r} (ids {ids[0]}, {ids[1]}); give an id" in done.stderr
    done = subprocess.run(
        [*base, *out, "--project", "no such"], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "no project has the id or title 'no such'" in done.stderr
    done = subprocess.run(
        [*base, *out, "--project", str(ids[0]), "--textarea", "nope"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "no TextArea named 'nope'" in done.stderr
    assert not (rig.tmp_path / "x.jsonl").exists()


def test_export_replaces_a_planted_symlink_with_a_private_file(rig: Rig) -> None:
    client = rig.ls_client
    project = client.projects.create(title=f"fb-link-{uuid.uuid4().hex[:8]}", label_config=CUSTOM_CONFIG)
    victim = rig.tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = rig.tmp_path / "sft.jsonl"
    out.symlink_to(victim)
    (rig.tmp_path / "sft.jsonl.partial").symlink_to(victim)  # the old, predictable temporary name
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INGEST_", "KAFKA_", "LABEL_STUDIO_"))}
    env.update(LABEL_STUDIO_URL=rig.label_studio.url, LABEL_STUDIO_API_KEY=rig.label_studio.api_key)
    done = subprocess.run(
        [
            *(sys.executable, "-m", "labelstudio_ingest.consumer.cli", "export", "--format", "sft"),
            *("--project", str(project.id), "--out", str(out), "--incremental"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "keep me"
    assert not out.is_symlink()
    assert (out.stat().st_mode & 0o777) == 0o600
    assert out.read_text() == ""

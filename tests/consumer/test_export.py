"""Export formatting, filters, incremental state and bounded memory, over tasks built by consumer/tasks.py."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tracemalloc
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from labelstudio_ingest.consumer import export_cli
from labelstudio_ingest.consumer.annotations import feedback_config
from labelstudio_ingest.consumer.export import (
    FORMATS,
    OVERLAP,
    ExportState,
    ProjectRef,
    effective_since,
    export,
    updated_since_query,
)
from labelstudio_ingest.consumer.labelconfig import default_config, task_layout
from labelstudio_ingest.consumer.tasks import build_tasks
from labelstudio_ingest.schemas import ChatEvent, PromptEvent
from tests.consumer.test_annotations import annotation, choice, rating, textarea
from tests.label_configs import CUSTOM_CONFIG

PROJECT = ProjectRef(3, "Reviews")
RUN_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
T0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
CUSTOM = feedback_config(CUSTOM_CONFIG)
CHAT = feedback_config(default_config("chat"))


def prompt_task(task_id: int = 1, prompt: str = "What is 2+2?", answer: str = "5") -> dict[str, Any]:
    event = PromptEvent.model_validate(
        {
            "schema_version": 1,
            "event_id": str(uuid.uuid4()),
            "run_id": str(RUN_ID),
            "event_time": T0.isoformat(),
            "kind": "prompt",
            "prompts": [prompt],
            "generations": [[{"text": answer}]],
            "model_name": "fake-llm",
            "tags": ["t"],
            "metadata": {"user": "u1"},
            "target": {"project_id": 3},
        }
    )
    task = build_tasks(event, task_layout(CUSTOM_CONFIG))[0]
    return {"id": task_id, **task}


def chat_task() -> dict[str, Any]:
    event = ChatEvent.model_validate(
        {
            "schema_version": 1,
            "event_id": str(uuid.uuid4()),
            "run_id": str(RUN_ID),
            "event_time": T0.isoformat(),
            "kind": "chat",
            "messages": [
                [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital?"}]
            ],
            "generations": [[{"text": "Lyon."}]],
            "target": {"project_id": 3},
        }
    )
    return {"id": 9, **build_tasks(event, task_layout(default_config("chat")))[0]}


def reviewed(task: dict[str, Any], *annotations: dict[str, Any]) -> dict[str, Any]:
    return {**task, "annotations": list(annotations)}


FULL = annotation([textarea("4"), rating(5), choice("Positive")], id=11, updated="2026-01-01T11:00:00Z")


def run(tasks: list[dict[str, Any]], fmt: Any, **options: Any) -> tuple[list[dict[str, Any]], Any]:
    out = io.StringIO()
    report = export(tasks, out, fmt=fmt, config=options.pop("config", CUSTOM), project=PROJECT, **options)
    return [json.loads(line) for line in out.getvalue().splitlines()], report


def test_sft_prompt_task() -> None:
    records, report = run([reviewed(prompt_task(), FULL)], "sft")
    assert records == [
        {"messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]}
    ]
    assert (report.tasks, report.exported, dict(report.skipped)) == (1, 1, {})


def test_sft_chat_task_keeps_the_conversation() -> None:
    records, _ = run([reviewed(chat_task(), annotation([textarea("Paris.")]))], "sft", config=CHAT)
    assert records == [
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Capital?"},
                {"role": "assistant", "content": "Paris."},
            ]
        }
    ]


def test_preference_standard_and_conversational() -> None:
    records, _ = run([reviewed(prompt_task(), FULL)], "preference")
    assert records == [{"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"}]
    records, _ = run([reviewed(chat_task(), annotation([textarea("Paris.")]))], "preference", config=CHAT)
    assert records == [
        {
            "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital?"}],
            "chosen": [{"role": "assistant", "content": "Paris."}],
            "rejected": [{"role": "assistant", "content": "Lyon."}],
        }
    ]


def test_preference_skips_unchanged_responses() -> None:
    records, report = run([reviewed(prompt_task(answer="4"), FULL)], "preference")
    assert records == []
    assert dict(report.skipped) == {"unchanged": 1}


def test_reward_record() -> None:
    records, _ = run([reviewed(prompt_task(), FULL)], "reward")
    assert records == [
        {"prompt": "What is 2+2?", "response": "5", "rating": 1.0, "choices": {"sentiment": ["Positive"]}}
    ]


def test_metadata_is_one_separate_key() -> None:
    records, _ = run([reviewed(prompt_task(), FULL)], "sft", include_metadata=True)
    assert records[0]["metadata"] == {
        "run_id": str(RUN_ID),
        "prompt_index": 0,
        "project_id": 3,
        "project_title": "Reviews",
        "task_id": 1,
        "annotation_id": 11,
        "reviewer_id": 7,
        "annotated_at": "2026-01-01T11:00:00+00:00",
        "model_name": "fake-llm",
        "model_response": "5",
        "corrected": "4",
        "ratings": {"rating": {"raw": 5.0, "max": 5, "scaled": 1.0}},
        "choices": {"sentiment": ["Positive"]},
        "tags": ["t"],
        "run_metadata": {"user": "u1"},
    }


def test_skips_are_counted_by_reason() -> None:
    tasks = [
        prompt_task(1),
        reviewed(prompt_task(2), annotation([], was_cancelled=True)),
        reviewed(prompt_task(3), annotation([])),
        reviewed(prompt_task(4), annotation([rating(3)])),
        reviewed(prompt_task(5), FULL),
    ]
    records, report = run(tasks, "sft")
    assert len(records) == 1
    assert dict(report.skipped) == {"not_annotated": 1, "cancelled": 1, "empty": 1, "no_text": 1}
    _, report = run(tasks, "reward")
    assert report.exported == 2
    assert dict(report.skipped) == {"not_annotated": 1, "cancelled": 1, "empty": 1}
    assert report.summary() == "5 tasks read, 2 exported; skipped: cancelled 1, empty 1, not_annotated 1"


def test_since_filters_on_annotation_time() -> None:
    late = annotation([textarea("late")], id=2, updated="2026-01-03T00:00:00Z")
    tasks = [reviewed(prompt_task(1), FULL), reviewed(prompt_task(2), late)]
    records, report = run(tasks, "sft", since=datetime(2026, 1, 2, tzinfo=UTC))
    assert [r["messages"][-1]["content"] for r in records] == ["late"]
    assert dict(report.skipped) == {"before_since": 1}


def test_incremental_exports_each_version_once(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = ExportState.load(path, PROJECT.id, "sft")
    tasks = [reviewed(prompt_task(1), FULL)]
    records, _ = run(tasks, "sft", state=state)
    assert len(records) == 1
    state.save(path)

    state = ExportState.load(path, PROJECT.id, "sft")
    assert state.high_water == datetime(2026, 1, 1, 11, tzinfo=UTC)
    # a second task annotated a minute *before* the mark (inside the overlap), one updated after
    newer = annotation([textarea("four")], id=14, updated="2026-01-01T12:00:00Z")
    slightly_older = annotation([textarea("x")], id=12, updated="2026-01-01T10:59:00Z")
    tasks = [
        reviewed(prompt_task(1), FULL),
        reviewed(prompt_task(2), slightly_older),
        reviewed(prompt_task(3), newer),
    ]
    records, report = run(tasks, "sft", state=state)
    assert sorted(r["messages"][-1]["content"] for r in records) == ["four", "x"]
    assert dict(report.skipped) == {"already_exported": 1}
    state.save(path)

    state = ExportState.load(path, PROJECT.id, "sft")
    old = annotation([textarea("y")], id=13, updated=(T0 + timedelta(hours=2) - OVERLAP * 2).isoformat())
    records, report = run([*tasks, reviewed(prompt_task(4), old)], "sft", state=state)
    assert records == []
    # the mark is 12:00 now: only task 3 is in the window (and exported), the others are older
    assert dict(report.skipped) == {"already_exported": 1, "before_since": 3}


def test_state_of_another_project_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    ExportState(1, "sft").save(path)
    with pytest.raises(ValueError, match="state of project 1 format sft, not of project 2 format sft"):
        ExportState.load(path, 2, "sft")


def _many_tasks(count: int) -> Iterator[dict[str, Any]]:
    template = reviewed(prompt_task(), FULL)
    for task_id in range(count):
        yield {**template, "id": task_id, "annotations": [{**FULL, "id": task_id}]}


class _NullWriter(io.TextIOBase):
    def __init__(self) -> None:
        self.lines = 0

    def write(self, text: str) -> int:
        self.lines += 1
        return len(text)


def test_memory_stays_bounded_over_100k_tasks() -> None:
    """100k reviewed tasks stream through with a small peak: nothing is held but the task at hand."""
    out = _NullWriter()
    tracemalloc.start()
    try:
        report = export(_many_tasks(100_000), out, fmt="reward", config=CUSTOM, project=PROJECT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.exported == 100_000
    assert out.lines == 100_000
    # Holding 100k tasks as dicts takes several hundred MiB; one at a time takes well under one.
    assert peak < 4 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_cli_lists_the_same_formats() -> None:
    assert export_cli.FORMATS == FORMATS


def test_the_command_line_loads_no_sdk_until_a_command_runs() -> None:
    """``labelstudio-ingest dlq ...`` and ``--help`` stay quick: the SDK loads only for export/webhooks."""
    code = (
        "import sys; from labelstudio_ingest.consumer import cli; cli.build_parser(); "
        "print(sorted(m for m in sys.modules if m.startswith('label_studio_sdk')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_label_studio_query_starts_before_the_floor() -> None:
    floor = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    query = json.loads(updated_since_query(floor))
    assert query == {
        "filters": {
            "conjunction": "and",
            "items": [
                {
                    "filter": "filter:tasks:updated_at",
                    "operator": "greater",
                    "type": "Datetime",
                    "value": "2026-01-01T11:50:00.123456Z",
                }
            ],
        }
    }
    state = ExportState(3, "sft", high_water=floor)
    assert effective_since(None, state) == floor - OVERLAP
    assert effective_since(floor, state) == floor
    assert effective_since(None, None) is None

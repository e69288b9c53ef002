"""What one run can weigh downstream is bounded: its metadata is not copied into every task in
full, and no ledger record grows with the number of tasks beyond what a broker accepts."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from labelstudio_ingest.consumer.ledger import TASK_IDS_PER_RECORD, decode_entry
from labelstudio_ingest.consumer.tasks import META_MAX_BYTES, build_tasks
from labelstudio_ingest.schemas import PromptEvent, Target

from .fakes import LAYOUT, records_of
from .test_pipeline import World

BIG_METADATA = {f"key-{i}": "v" * 1_000 for i in range(420)}  # about 420 KB of JSON


def run(*, prompts: int, metadata: dict[str, str], error: dict[str, str] | None = None) -> PromptEvent:
    return PromptEvent.model_validate(
        {
            "schema_version": 1,
            "event_id": str(uuid.uuid4()),
            "run_id": str(uuid.uuid4()),
            "event_time": datetime.now(UTC).isoformat(),
            "kind": "prompt",
            "prompts": [f"prompt {i}" for i in range(prompts)],
            "generations": [] if error else [[{"text": "answer"}] for _ in range(prompts)],
            "error": error,
            "metadata": metadata,
            "target": Target(project_name="p").model_dump(exclude_none=True),
        }
    )


def test_large_metadata_is_in_full_on_the_first_task_and_cut_with_a_marker_on_the_others() -> None:
    tasks = build_tasks(run(prompts=256, metadata=BIG_METADATA), LAYOUT)

    assert tasks[0]["meta"]["metadata"] == BIG_METADATA
    assert "metadata_truncated" not in tasks[0]["meta"]
    for task in tasks[1:]:
        assert task["meta"]["metadata"] == {}
        assert task["meta"]["metadata_truncated"].endswith("left out: in full on prompt_index 0")
    assert len(json.dumps(tasks).encode()) < 2 * len(json.dumps(BIG_METADATA)) + 256 * 1_000


def test_a_large_error_message_is_cut_the_same_way() -> None:
    error = {"type": "ValueError", "message": "x" * (META_MAX_BYTES + 1)}

    tasks = build_tasks(run(prompts=3, metadata={}, error=error), LAYOUT)

    assert tasks[0]["meta"]["error"] == error
    assert [t["meta"]["error"] for t in tasks[1:]] == [{"type": "ValueError", "message": ""}] * 2
    assert all("metadata_truncated" in t["meta"] for t in tasks[1:])


def test_small_metadata_is_copied_into_every_task() -> None:
    tasks = build_tasks(run(prompts=3, metadata={"user": "u-1"}), LAYOUT)

    assert [t["meta"]["metadata"] for t in tasks] == [{"user": "u-1"}] * 3
    assert all("metadata_truncated" not in t["meta"] for t in tasks)


def test_the_cap_is_a_setting() -> None:
    tasks = build_tasks(run(prompts=2, metadata={"user": "u-1"}), LAYOUT, meta_max_bytes=5)

    assert tasks[1]["meta"]["metadata"] == {}


def test_imported_records_of_runs_with_many_tasks_stay_small() -> None:
    world = World()
    runs = [(uuid.uuid4(), list(range(i * 256, (i + 1) * 256))) for i in range(400)]

    world.ledger.mark_imported(0, 1, runs)

    records = world.outbox.topic("in.ledger")
    entries = [decode_entry(r.value) for r in records]
    assert [run for entry in entries for run in entry.run_ids] == [run for run, _ in runs]
    assert all(sum(len(ids) for ids in entry.task_ids) <= TASK_IDS_PER_RECORD for entry in entries)
    assert max(len(r.value or b"") for r in records) < 300_000


def test_the_request_budget_counts_the_metadata_copied_into_later_tasks() -> None:
    world = World()
    world.sink.max_request_bytes = 1_000_000
    small_but_copied = {f"k{i}": "v" * 100 for i in range(100)}  # ~11 KB: under the cap, copied 255 times
    events = [run(prompts=256, metadata=small_but_copied) for _ in range(2)]

    world.run(records_of(*events))

    assert world.ls.import_calls == [256, 256]  # ~3 MB of tasks each: one run per request

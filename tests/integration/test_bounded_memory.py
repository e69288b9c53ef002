"""A batch of maximum-size runs (256 prompts, ~420 KB of metadata, ~0.8 MB each) is imported once
per task by a consumer whose peak RSS stays under RSS_CEILING_MB at default settings
(docs/CONSUMER.md, "Memory"). Copied into every task, that metadata made one import request of
hundreds of MB, which Label Studio refused with HTTP 500 while the consumer grew to gigabytes."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from labelstudio_ingest.schemas import DEFAULT_LIMITS, PromptEvent, Target, encode
from tests.consumer.runner import Rig, eventually, project_titled, run_ids_of

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # about 1.5 min: Label Studio imports 3,072 tasks

RUNS = 12
PROMPTS = 256
RSS_CEILING_MB = 400


@pytest.fixture
def rig_partitions() -> int:
    return 1


def maximum_run(target: Target) -> PromptEvent:
    return PromptEvent.model_validate(
        {
            "schema_version": 1,
            "event_id": str(uuid.uuid4()),
            "run_id": str(uuid.uuid4()),
            "event_time": datetime.now(UTC).isoformat(),
            "kind": "prompt",
            "prompts": [f"prompt {i}: " + "p" * 1_000 for i in range(PROMPTS)],
            "generations": [[{"text": f"answer {i}: " + "a" * 250}] for i in range(PROMPTS)],
            "metadata": {f"key-{i}": "m" * 1_000 for i in range(420)},
            "target": target.model_dump(exclude_none=True),
        }
    )


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def test_a_batch_of_maximum_size_runs_is_imported_in_bounded_memory(rig: Rig) -> None:
    target = Target(project_name=f"it-memory-{uuid.uuid4().hex[:8]}")
    runs = [maximum_run(target) for _ in range(RUNS)]
    assert all(700_000 < len(encode(run)) <= DEFAULT_LIMITS.max_event_bytes for run in runs)
    rig.publisher.events(rig.topic, runs)
    consumer = rig.consumer(
        INGEST_IMPORT_TIMEOUT_S="20", INGEST_MAX_POLL_INTERVAL_MS="25000", INGEST_BATCH_SIZE="500"
    )
    try:
        consumer.start()
        eventually(
            lambda: (
                consumer.get("/metrics") is not None and consumer.metric("ingest_runs_imported_total") >= RUNS
            ),
            timeout=300,
            message="not every run was imported",
        )
        project = project_titled(rig.ls_client, target.project_name or "")
        assert consumer.proc is not None
        peak = peak_rss_mb(consumer.proc.pid)
        counts = Counter(run_ids_of(rig.ls_client, project.id))
        assert counts == dict.fromkeys((str(run.run_id) for run in runs), PROMPTS)
        assert peak < RSS_CEILING_MB, f"peak RSS {peak:.0f} MB"
        print(f"peak RSS {peak:.0f} MB")
        assert consumer.terminate() == 0
    finally:
        consumer.kill()

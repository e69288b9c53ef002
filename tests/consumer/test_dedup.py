"""The per-partition dedup memory: last ledger state wins, bounded by count and horizon."""

from __future__ import annotations

import uuid

from labelstudio_ingest.consumer.dedup import SEGMENTS, PartitionMemory

HOUR_MS = 3_600_000


def run() -> bytes:
    return uuid.uuid4().bytes


def test_imported_runs_are_remembered() -> None:
    memory = PartitionMemory(horizon_ms=24 * HOUR_MS, max_run_ids=1000)
    a, b = run(), run()
    memory.imported(a, 0)
    assert memory.is_imported(a)
    assert not memory.is_imported(b)
    memory.imported(a, 1)
    assert len(memory) == 1


def test_the_last_ledger_state_wins() -> None:
    memory = PartitionMemory(horizon_ms=24 * HOUR_MS, max_run_ids=1000)
    a = run()
    memory.pending_marker(a, 7, 0)
    assert memory.pending_project(a) == 7
    assert not memory.is_imported(a)
    memory.imported(a, 10)
    assert memory.pending_project(a) is None
    assert memory.is_imported(a)
    memory.pending_marker(a, 8, 0)  # a later pending marker makes the run uncertain again
    assert memory.pending_project(a) == 8
    assert not memory.is_imported(a)
    memory.forget(a)
    assert memory.pending_project(a) is None
    assert not memory.is_imported(a)
    assert len(memory) == 0


def test_memory_is_bounded_by_count_and_keeps_the_newest() -> None:
    cap = 8_000
    memory = PartitionMemory(horizon_ms=1000 * HOUR_MS, max_run_ids=cap)
    runs = [run() for _ in range(5 * cap)]
    for i, r in enumerate(runs):
        memory.imported(r, i)
    assert cap <= len(memory) <= cap + cap // SEGMENTS
    assert all(memory.is_imported(r) for r in runs[-cap:])
    assert not memory.is_imported(runs[0])


def test_runs_older_than_the_horizon_are_forgotten_and_newer_ones_kept() -> None:
    horizon = 8 * HOUR_MS
    memory = PartitionMemory(horizon_ms=horizon, max_run_ids=1_000_000)
    old = [run() for _ in range(100)]
    for r in old:
        memory.imported(r, 0)
    recent = run()
    memory.imported(recent, horizon - 1)
    assert all(memory.is_imported(r) for r in old)  # still within the horizon
    memory.expire(2 * horizon + HOUR_MS)
    assert not any(memory.is_imported(r) for r in old)


def test_a_run_is_kept_for_at_least_the_horizon() -> None:
    horizon = 8 * HOUR_MS
    memory = PartitionMemory(horizon_ms=horizon, max_run_ids=1_000_000)
    first = run()
    memory.imported(first, 0)
    for minute in range(0, horizon // 60_000, 7):
        memory.imported(run(), minute * 60_000)
    memory.expire(horizon)
    assert memory.is_imported(first)

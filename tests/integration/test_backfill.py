"""`labelstudio-ingest backfill` against the real broker and Label Studio: filters, kills, re-runs, live."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from labelstudio_ingest.consumer import backfill_cli
from labelstudio_ingest.consumer.cli import build_parser
from labelstudio_ingest.consumer.ledger import decode_entry
from labelstudio_ingest.consumer.settings import Settings
from labelstudio_ingest.schemas import ChatEvent, PromptEvent, Target, encode, event_headers, event_key
from tests.consumer.runner import (
    CONSUMER_ENV,
    Rig,
    chat_event,
    eventually,
    project_titled,
    prompt_event,
    read_topic,
    tasks_of,
)
from tests.harness import wait_until

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000


def title(kind: str) -> str:
    return f"bf-{kind}-{uuid.uuid4().hex[:10]}"


@dataclass
class Backfill:
    """``labelstudio-ingest backfill`` in a subprocess; stdout (the summary) and stderr in files."""

    rig: Rig
    args: list[str]
    name: str = "backfill"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def out_path(self) -> Path:
        return self.rig.tmp_path / f"{self.name}.out"

    @property
    def err_path(self) -> Path:
        return self.rig.tmp_path / f"{self.name}.err"

    def start(self, **extra: str) -> Backfill:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("INGEST_", "KAFKA_", "LABEL_STUDIO_"))
        }
        env.update(
            {
                **CONSUMER_ENV,
                "KAFKA_BOOTSTRAP_SERVERS": self.rig.bootstrap,
                "LABEL_STUDIO_URL": self.rig.label_studio.url,
                "LABEL_STUDIO_API_KEY": self.rig.label_studio.api_key,
                "INGEST_TOPIC": self.rig.topic,
                "INGEST_LOG_LEVEL": "WARNING",
                **extra,
            }
        )
        with self.out_path.open("wb") as out, self.err_path.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "labelstudio_ingest.consumer.cli", "backfill", "--json", *self.args],
                env=env,
                stdout=out,
                stderr=err,
            )
        return self

    def run(self, timeout: float = 120.0, **extra: str) -> tuple[int, dict[str, Any]]:
        """Start, wait for the exit, and return the exit code and the JSON summary."""
        code = self.start(**extra).wait(timeout)
        return code, self.summary()

    def wait(self, timeout: float = 120.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def summary(self) -> dict[str, Any]:
        lines = [line for line in self.out_path.read_text().splitlines() if line.startswith("{")]
        assert lines, f"no summary; stderr:\n{self.stderr()}"
        result: dict[str, Any] = json.loads(lines[-1])
        return result

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace") if self.err_path.exists() else ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)


def in_process(rig: Rig, args: list[str]) -> tuple[int, dict[str, Any], str]:
    """The command run in this process (no interpreter start-up): exit code, JSON summary, stderr."""
    parsed = build_parser().parse_args(["backfill", "--json", "--progress", "none", *args])
    settings = Settings(
        bootstrap_servers=rig.bootstrap,
        label_studio_url=rig.label_studio.url,
        label_studio_api_key=rig.label_studio.api_key,
        topic=rig.topic,
        **{k: v for k, v in vars(parsed).items() if k in Settings.model_fields},
        **{k.lower().removeprefix("ingest_"): v for k, v in CONSUMER_ENV.items() if "METRICS" not in k},
    )
    out, err = io.StringIO(), io.StringIO()
    command = backfill_cli.Backfill(settings, backfill_cli.parse_request(parsed), out, err, signals=False)
    code = command.main()
    lines = [line for line in out.getvalue().splitlines() if line.startswith("{")]
    return code, json.loads(lines[-1]) if lines else {}, err.getvalue()


def publish_at(rig: Rig, events: Iterable[PromptEvent | ChatEvent], timestamp_ms: int) -> None:
    """Publish as the producer does, with the record time set (as if published back then)."""
    producer = KafkaProducer(bootstrap_servers=rig.bootstrap, acks="all")
    try:
        for event in events:
            producer.send(
                rig.topic,
                key=event_key(event),
                value=encode(event),
                headers=event_headers(event),
                timestamp_ms=timestamp_ms,
            )
        producer.flush()
    finally:
        producer.close()


def with_fields(event: PromptEvent | ChatEvent, **changes: Any) -> PromptEvent | ChatEvent:
    body = {**event.model_dump(mode="json"), **changes}
    return type(event).model_validate(body)


def run_id_counts(rig: Rig, project_id: int) -> Counter[str]:
    return Counter(t.data["run_id"] for t in tasks_of(rig.ls_client, project_id))


def test_one_services_errors_since_two_days_then_a_second_run_imports_nothing(rig: Rig) -> None:
    live = Target(project_name=title("live"))
    now_ms = int(time.time() * 1000)

    def failed(service: str, kind: str = "prompt") -> PromptEvent | ChatEvent:
        base = prompt_event(target=live) if kind == "prompt" else chat_event(target=live)
        return with_fields(
            base, source={"service": service}, error={"type": "Timeout", "message": "slow"}, generations=[]
        )

    too_old = [failed("search") for _ in range(3)]
    wanted = [failed("search") for _ in range(4)] + [failed("search", "chat") for _ in range(2)]
    others = [with_fields(prompt_event(target=live), source={"service": "search"}) for _ in range(3)]
    others += [failed("billing") for _ in range(3)]
    publish_at(rig, too_old, now_ms - 3 * DAY_MS)
    publish_at(rig, [*wanted, *others], now_ms - 60_000)
    rig.publisher.raw(rig.topic, b"{not json", key=b"bad")
    target = title("errors")
    selection = ["--since", "2d", "--service", "search", "--errors-only"]

    # a month back: more than the topic holds, which it says, with the oldest time it has
    code, summary, stderr = in_process(rig, ["--project", target, *selection, "--since", "30d", "--dry-run"])
    assert code == 0, stderr
    assert summary["matched"] == 9
    assert {(r["kind"], r["service"]): r["runs"] for r in summary["by"]} == {
        ("prompt", "search"): 7,
        ("chat", "search"): 2,
    }
    assert "older than anything the topic still holds" in stderr
    assert time.strftime("%Y-%m-%dT%H:%M", time.gmtime(now_ms / 1000 - 3 * 86_400)) in stderr
    assert project_titled(rig.ls_client, target) is None  # a dry run creates nothing

    first = Backfill(rig, ["--project", target, *selection], name="first")
    code, summary = first.run()
    assert code == 0, first.stderr()
    assert (summary["state"], summary["matched"], summary["imported"]) == ("done", 6, 6)
    assert summary["invalid"] == 1
    project = project_titled(rig.ls_client, target)
    assert project is not None
    assert run_id_counts(rig, project.id) == Counter({str(e.run_id): 1 for e in wanted})
    task = tasks_of(rig.ls_client, project.id)[0]
    assert task.meta["backfill"]["name"] == summary["backfill"]
    assert task.meta["backfill"]["original_target"]["project_name"] == live.project_name
    assert task.meta["service"] == "search"

    code, again, stderr = in_process(rig, ["--project", target, *selection])
    assert code == 0, stderr
    assert (again["backfill"], again["read"], again["imported"]) == (summary["backfill"], 0, 0)

    code, again, stderr = in_process(rig, ["--project", target, *selection, "--restart"])
    assert code == 0, stderr
    assert (again["imported"], again["already_present"]) == (0, 6)
    assert run_id_counts(rig, project.id) == Counter({str(e.run_id): 1 for e in wanted})


def test_an_unsafe_config_is_refused_before_anything_is_created(rig: Rig) -> None:
    config = rig.tmp_path / "unsafe.xml"
    config.write_text(
        '<View><Text name="prompt" value="$prompt"/><TextArea name="response" toName="prompt"/>'
        "<Script>alert(1)</Script></View>"
    )
    target = title("unsafe")
    code, _, stderr = in_process(rig, ["--project", target, "--config", str(config)])
    assert code == backfill_cli.EXIT_USAGE
    assert "cannot create project" in stderr
    assert project_titled(rig.ls_client, target) is None


def test_ctrl_c_then_a_kill_midway_and_a_re_run_import_every_run_once(rig: Rig) -> None:
    runs = [prompt_event(target=Target(project_name=title("live"))) for _ in range(600)]
    rig.publisher.events(rig.topic, runs)
    target = title("killed")

    def imported() -> int:
        return int(rig.ls_client.projects.get(id=project.id).task_number or 0)

    stopped = Backfill(rig, ["--project", target], name="stopped").start(INGEST_BATCH_SIZE="20")
    try:
        project = eventually(lambda: project_titled(rig.ls_client, target), message="target project")
        eventually(lambda: imported() >= 60, message="a part imported")
        assert stopped.proc is not None
        stopped.proc.send_signal(signal.SIGINT)
        assert stopped.wait(60) == backfill_cli.EXIT_INTERRUPTED, stopped.stderr()
    finally:
        stopped.kill()
    assert stopped.summary()["state"] == "interrupted"
    after_ctrl_c = imported()
    assert after_ctrl_c < len(runs)

    killed = Backfill(rig, ["--project", target], name="killed").start(INGEST_BATCH_SIZE="10")
    try:
        wait_until(lambda: imported() >= after_ctrl_c + 20, 60, 0.05, "more imported")
    finally:
        killed.kill()
    assert imported() < len(runs)

    rerun = Backfill(rig, ["--project", target], name="rerun")
    code, summary = rerun.run(timeout=180)
    assert code == 0, rerun.stderr()
    assert summary["read"] < len(runs)  # resumed from the committed offsets, not from the start
    assert run_id_counts(rig, project.id) == Counter({str(e.run_id): 1 for e in runs})


def test_live_ingestion_running_at_the_same_time_is_unaffected(rig: Rig) -> None:
    live = Target(project_name=title("live"))
    before = [prompt_event(target=live) for _ in range(100)]
    rig.publisher.events(rig.topic, before)
    consumer = rig.consumer().start()
    target = title("beside-live")
    backfill = Backfill(rig, ["--project", target], name="beside").start()
    try:
        eventually(lambda: "records to read" in backfill.stderr(), message="backfill planned")
        after = [prompt_event(target=live) for _ in range(50)]
        rig.publisher.events(rig.topic, after)
        assert backfill.wait(120) == 0, backfill.stderr()
        live_project = eventually(
            lambda: project_titled(rig.ls_client, live.project_name or ""), message="live"
        )
        everything = Counter({str(e.run_id): 1 for e in [*before, *after]})
        eventually(lambda: run_id_counts(rig, live_project.id) == everything, message="live tasks")
        assert consumer.terminate() == 0
    finally:
        consumer.kill()
        backfill.kill()

    project = project_titled(rig.ls_client, target)
    assert project is not None
    copied = run_id_counts(rig, project.id)
    assert set(copied) >= {str(e.run_id) for e in before}  # the topic as it was when the backfill started
    assert set(copied) <= set(everything)
    assert max(copied.values()) == 1
    live_ledger = read_topic(rig.bootstrap, f"{rig.topic}.ledger", expect=1)
    assert {decode_entry(r.value).project_id for r in live_ledger} - {None} == {live_project.id}

"""Fakes for unit tests of the consumer's own logic (integration tests use real servers)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from label_studio_sdk.core.api_error import ApiError
from label_studio_sdk.errors import BadRequestError

from labelstudio_ingest.consumer.errors import Rebalanced
from labelstudio_ingest.consumer.labelconfig import LabelConfigError, task_layout
from labelstudio_ingest.consumer.outbox import OutRecord
from labelstudio_ingest.consumer.projects import Project, UnknownProjectError
from labelstudio_ingest.schemas import Event, PromptEvent, Target, encode, event_headers, event_key

CONFIG = '<View><Text name="prompt" value="$prompt"/><TextArea name="response" toName="prompt"/></View>'
LAYOUT = task_layout(CONFIG)


def prompt_event(*, run_id: uuid.UUID | None = None, project: str = "p", text: str = "hello") -> PromptEvent:
    """A valid prompt event for project title ``project``."""
    return PromptEvent(
        schema_version=1,
        event_id=uuid.uuid4(),
        run_id=run_id or uuid.uuid4(),
        event_time=datetime.now(UTC),
        kind="prompt",
        prompts=[text],
        generations=[[{"text": f"answer to {text}"}]],  # type: ignore[list-item]
        target=Target(project_name=project),
    )


@dataclass
class Record:
    """The fields of a kafka-python ConsumerRecord the consumer reads."""

    value: bytes | None
    key: bytes | None = None
    partition: int = 0
    offset: int = 0
    topic: str = "in"
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    timestamp: int = 0


def records_of(*values: Event | bytes, partition: int = 0, start: int = 0) -> list[Record]:
    """Consumer records for events (encoded and keyed like the producer does) or raw values."""
    out = []
    for i, value in enumerate(values):
        if not isinstance(value, bytes):
            out.append(
                Record(encode(value), event_key(value), partition, start + i, headers=event_headers(value))
            )
        else:
            out.append(Record(value, b"raw", partition, start + i))
    return out


class FakeOutbox:
    """Collects what would be produced."""

    def __init__(self) -> None:
        self.sent: list[OutRecord] = []
        self.flushes = 0

    def send(self, record: OutRecord, *, if_too_large: OutRecord | None = None) -> None:
        self.sent.append(record)

    def flush(self, timeout_s: float | None = None) -> None:
        self.flushes += 1

    def topic(self, name: str) -> list[OutRecord]:
        return [r for r in self.sent if r.topic == name]


class FakeResolver:
    """Titles map to projects; ``missing*`` titles are unknown, ``badconfig*`` ones unusable."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.forgotten: list[int] = []

    def resolve(self, target: Target) -> Project:
        name = target.project_name or ""
        if name.startswith("missing"):
            raise UnknownProjectError(f"no project {name!r}")
        if name.startswith("badconfig"):
            raise LabelConfigError("the label config has no TextArea")
        if name not in self.ids:
            self.ids[name] = max(self.ids.values(), default=0) + 1
        return Project(self.ids[name], name, LAYOUT)

    def forget(self, project_id: int) -> None:
        self.forgotten.append(project_id)
        for name, pid in list(self.ids.items()):
            if pid == project_id:  # the title now names a new project
                self.ids[name] = max(self.ids.values()) + 1


@dataclass
class _Response:
    task_ids: list[int]


@dataclass
class _Task:
    id: int
    data: dict[str, Any]


class FakeLabelStudio:
    """Just enough of the SDK client: ``projects.import_tasks`` and ``tasks.list``.

    ``fail`` is a list of scripted failures for the next imports: ``"connect"`` (not applied),
    ``"timeout_after_apply"`` (applied, then the client times out), ``"503"``, ``"404"``,
    ``"rebalanced"`` (the request hook refused to send it).
    A task whose prompt contains ``BAD`` makes the whole request fail with 400.
    """

    def __init__(self) -> None:
        self.tasks: dict[int, list[_Task]] = {}
        self.next_task = 1
        self.fail: list[str] = []
        self.gone: set[int] = set()
        self.import_calls: list[int] = []
        self.list_calls = 0

    # projects.import_tasks
    def import_tasks(
        self, *, id: int, request: list[dict[str, Any]], return_task_ids: bool, request_options: Any
    ) -> _Response:
        assert request_options["max_retries"] == 0
        self.import_calls.append(len(request))
        failure = self.fail.pop(0) if self.fail else None
        req = httpx.Request("POST", f"http://ls/api/projects/{id}/import")
        if failure == "connect":
            raise httpx.ConnectError("refused", request=req)
        if failure == "rebalanced":  # what the app's request hook raises once partitions moved
            raise Rebalanced()
        if failure == "503":
            raise ApiError(status_code=503, body="unavailable")
        if id in self.gone or failure == "404":
            raise ApiError(status_code=404, body="<html>not found</html>")
        if any("BAD" in str(t["data"].get("prompt")) for t in request):
            raise BadRequestError(body={"validation_errors": {"non_field_errors": ["bad task"]}})
        ids = []
        for task in request:
            self.tasks.setdefault(id, []).append(_Task(self.next_task, task["data"]))
            ids.append(self.next_task)
            self.next_task += 1
        if failure == "timeout_after_apply":
            raise httpx.ReadTimeout("timed out", request=req)
        return _Response(ids)

    # tasks.list (reached as client.tasks.list)
    def list(self, *, project: int, query: str, **_: Any) -> list[_Task]:
        self.list_calls += 1
        wanted = {item["value"] for item in json.loads(query)["filters"]["items"]}
        return [t for t in self.tasks.get(project, []) if t.data.get("run_id") in wanted]

    def run_ids(self, project: int) -> list[str]:
        return [t.data["run_id"] for t in self.tasks.get(project, [])]


class _TasksView:
    def __init__(self, ls: FakeLabelStudio) -> None:
        self.list = ls.list


def fake_client(ls: FakeLabelStudio) -> Any:
    """An object with ``.projects.import_tasks`` and ``.tasks.list`` backed by ``ls``."""

    class Client:
        projects = ls
        tasks = _TasksView(ls)

    return Client()


class FakeKafkaConsumer:
    """A group member as kafka-python 3 behaves with the eager protocol, driven by a script.

    ``logs[p]`` holds partition p's values. ``script`` is a list of group events applied at the start
    of the next ``poll()``: ``("revoke",)`` revokes everything; ``("assign", [p, ...])`` assigns,
    keeping the fetch position of a partition the member had before (as kafka-python 3 does) and
    starting a new one at its committed offset.
    """

    def __init__(self, topic: str, logs: dict[int, list[bytes]]) -> None:
        self.topic = topic
        self.logs = logs
        self.script: list[tuple[Any, ...]] = []
        self.listener: Any = None
        self._assigned: list[int] = []
        self._before_revoke: list[int] = []
        self.positions: dict[int, int] = {}
        self.committed: dict[int, int] = {}
        self._paused: set[int] = set()

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.listener = listener

    def _tp(self, p: int) -> Any:
        from kafka import TopicPartition  # noqa: PLC0415

        return TopicPartition(self.topic, p)

    def assignment(self) -> set[Any]:
        return {self._tp(p) for p in self._assigned}

    def pause(self, *tps: Any) -> None:
        self._paused |= {tp.partition for tp in tps}

    def resume(self, *tps: Any) -> None:
        self._paused -= {tp.partition for tp in tps}

    def seek(self, tp: Any, offset: int) -> None:
        assert tp.partition in self._assigned, "seek on a partition that is not assigned"
        self.positions[tp.partition] = offset

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, list[Record]]:
        while self.script:
            event = self.script.pop(0)
            if event[0] == "revoke":
                self._before_revoke = list(self._assigned)
                self.listener.on_partitions_revoked({self._tp(p) for p in self._assigned})
                self._assigned = []
            else:
                new = list(event[1])
                for p in new:
                    if p not in self._before_revoke:  # state not retained: committed offset
                        self.positions[p] = self.committed.get(p, 0)
                self._paused &= set(new)
                self._assigned = new
                self.listener.on_partitions_assigned({self._tp(p) for p in new})
        out: dict[Any, list[Record]] = {}
        budget = max_records or 10**9
        for p in self._assigned:
            if p in self._paused or budget <= 0:
                continue
            start = self.positions.get(p, 0)
            values = self.logs[p][start : start + budget]
            if values:
                out[self._tp(p)] = [
                    Record(v, b"k", p, start + i, topic=self.topic) for i, v in enumerate(values)
                ]
                self.positions[p] = start + len(values)
                budget -= len(values)
        return out

    def commit(self, offsets: dict[Any, Any]) -> None:
        for tp, meta in offsets.items():
            self.committed[tp.partition] = meta.offset

    def highwater(self, tp: Any) -> int:
        return len(self.logs[tp.partition])

    def position(self, tp: Any, timeout_ms: int | None = None) -> int:
        return self.positions.get(tp.partition, 0)

    def close(self, autocommit: bool = True, timeout_ms: int | None = None) -> None:
        pass


class FakeLedger:
    """Restores instantly; remembers which partitions it was told to keep."""

    def __init__(self) -> None:
        self.retained: set[int] = set()

    def retain(self, partitions: Any) -> None:
        self.retained = set(partitions)

    def restore(self, partitions: Any, budget_s: float) -> set[int]:
        return set(partitions)

    def remembered(self) -> int:
        return 0

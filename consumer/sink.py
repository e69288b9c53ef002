"""Label Studio as a sink: bulk import without SDK retries, bisection on 4xx, and run_id lookups.

Imports go out with ``request_options={"max_retries": 0, "timeout": ...}``: the SDK would
otherwise repeat a POST on 5xx/408/409/429 or a dropped connection by itself, and a repeated
import is a duplicate. Retrying is the caller's job, after asking Label Studio which run_ids
arrived (:meth:`LabelStudioSink.existing`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast
from urllib.parse import quote

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.request_options import RequestOptions
from label_studio_sdk.types import ImportApiRequest

from labelstudio_ingest.consumer.errors import (
    LabelStudioUnavailable,
    ProjectGone,
    Rebalanced,
    Verdict,
    classify,
    describe,
    error_kind,
    finished,
    suspect,
    unavailable,
)
from labelstudio_ingest.consumer.metrics import Metrics

log = logging.getLogger(__name__)

LOOKUP_QUERY_BYTES = 3_000
"""Most bytes of one run_id lookup's URL-encoded ``query`` parameter. The query travels in the URL,
and servers in front of Label Studio cap the request line (gunicorn: 4094 bytes, nginx: 8 KiB); a
longer one is answered 414 every time, which would look like an outage and stall the batch."""
LOOKUP_PAGE_SIZE = 500

K = TypeVar("K")


@dataclass(eq=False, slots=True)
class Unit(Generic[K]):
    """The tasks of one run: imported together or not at all."""

    key: K
    tasks: list[dict[str, Any]]
    size: int = 0
    """About how many bytes the tasks take in a request (for the request byte budget)."""

    @property
    def run_id(self) -> str:
        """The run the tasks belong to (``data.run_id`` of its tasks)."""
        return str(self.tasks[0]["data"]["run_id"]) if self.tasks else ""


@dataclass(slots=True)
class ImportReport(Generic[K]):
    """What a (possibly bisected) import did; filled as it goes, so it is valid after a raise."""

    imported: list[tuple[Unit[K], list[int]]] = field(default_factory=list)
    rejected: list[tuple[Unit[K], Exception]] = field(default_factory=list)
    """Units Label Studio refused with a 4xx, each alone in its request."""
    failed: list[tuple[Unit[K], Exception]] = field(default_factory=list)
    """Units whose import alone still failed with a 5xx or a timeout while Label Studio answered
    the question after it (isolation only): what they carry breaks Label Studio."""
    requests: int = 0


def requests_of(units: Sequence[Unit[K]], max_bytes: int, max_tasks: int) -> list[Sequence[Unit[K]]]:
    """``units`` cut, in order, into requests of at most ``max_bytes`` and ``max_tasks`` (a unit
    larger than either goes alone: a run's tasks are never split)."""
    out: list[Sequence[Unit[K]]] = []
    current: list[Unit[K]] = []
    size = tasks = 0
    for unit in units:
        if current and (size + unit.size > max_bytes or tasks + len(unit.tasks) > max_tasks):
            out.append(current)
            current, size, tasks = [], 0, 0
        current.append(unit)
        size += unit.size
        tasks += len(unit.tasks)
    if current:
        out.append(current)
    return out


class LabelStudioSink:
    """Imports tasks into Label Studio projects; one request at a time."""

    def __init__(
        self,
        client: LabelStudio,
        base_url: str,
        *,
        timeout_s: float,
        metrics: Metrics,
        max_request_bytes: int = 2**62,
        max_request_tasks: int = 2**62,
    ) -> None:
        self._client = client
        self._base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._metrics = metrics
        self.max_request_bytes = max_request_bytes
        self.max_request_tasks = max_request_tasks
        self.deadline: float | None = None
        """A monotonic time after which requests get only the time that is left (shutdown)."""

    def _options(self) -> RequestOptions:
        """No SDK retries (the caller backs off and retries), and a timeout within the shutdown bound."""
        timeout = self.timeout_s
        if self.deadline is not None:
            timeout = max(1.0, min(timeout, self.deadline - time.monotonic()))
        return {"max_retries": 0, "timeout": timeout}

    def import_units(
        self,
        project_id: int,
        units: Sequence[Unit[K]],
        report: ImportReport[K],
        on_imported: Callable[[Sequence[tuple[Unit[K], list[int]]]], None],
        before_request: Callable[[Sequence[Unit[K]]], None] | None = None,
        *,
        isolate: bool = False,
    ) -> None:
        """Import every unit into the project in requests within the byte and task budgets,
        splitting a request to isolate the units Label Studio refuses.

        ``on_imported`` gets the units of each successful request with their task ids (record
        them right away: a later request of the same call may still fail). 4xx-rejected units end
        up in ``report.rejected``. ``before_request`` gets the units of each request (the first,
        each half of a split) right before it is sent: the caller announces them in the ledger.

        A request Label Studio answered with a 5xx (not a gateway's, see ``errors.finished``) is
        followed by a question about its runs: those found were imported, the others were not.
        With ``isolate`` (the same import kept failing while Label Studio answers), a request that
        fails with any 5xx or a timeout is asked about (once ``timeout_s`` after it was sent: it
        cannot be applied later) and split like a 4xx one, and a run that fails alone ends up in
        ``report.failed``.

        Raises:
            LabelStudioUnavailable: Label Studio is down, timed out, or answered 5xx/408/409/429/401/403
                (``maybe_applied`` False when the question after a 5xx found the rest not imported).
            ProjectGone: the project does not exist (404).
        """
        pending = requests_of(units, self.max_request_bytes, self.max_request_tasks)
        pending.reverse()  # popped from the end: in order
        while pending:
            chunk = pending.pop()
            if before_request is not None:
                before_request(chunk)
            sent = time.monotonic()
            error = self._import_once(project_id, chunk, report, on_imported)
            if error is None:
                continue
            verdict = classify(error)
            if verdict is Verdict.NOT_FOUND:
                raise ProjectGone(project_id) from error
            if verdict is Verdict.REJECTED:
                left: Sequence[Unit[K]] = chunk
            elif suspect(error) and (isolate or finished(error)):
                if self.deadline is not None:  # shutting down: the request may have been cut short
                    raise unavailable(error, is_suspect=True) from error
                if not finished(error):  # it may still be applied until its timeout is over
                    time.sleep(max(0.0, sent + self.timeout_s - time.monotonic()))
                left = self._not_imported(project_id, chunk, report, on_imported, error)
                if not isolate:
                    raise unavailable(error, applied=False, is_suspect=True) from error
            else:
                raise unavailable(error, is_suspect=suspect(error)) from error
            if len(left) == 1:
                failures = report.rejected if verdict is Verdict.REJECTED else report.failed
                failures.append((left[0], error))
                log.warning(
                    "Label Studio refused a run"
                    if verdict is Verdict.REJECTED
                    else "a run breaks Label Studio",
                    extra={"project_id": project_id, "error": describe(error)},
                )
            elif left:
                half = len(left) // 2
                pending.extend([left[half:], left[:half]])

    def _not_imported(
        self,
        project_id: int,
        chunk: Sequence[Unit[K]],
        report: ImportReport[K],
        on_imported: Callable[[Sequence[tuple[Unit[K], list[int]]]], None],
        error: Exception,
    ) -> Sequence[Unit[K]]:
        """After a request failed with a 5xx or timed out (an import sent ``timeout_s`` ago is no
        longer applied later): record the units Label Studio has, return the others.

        Raises:
            LabelStudioUnavailable: the question failed too (``maybe_applied``: the import may be).
        """
        try:
            found = self.existing(project_id, [unit.run_id for unit in chunk])
        except LabelStudioUnavailable:
            raise unavailable(error, is_suspect=True) from error
        done = [(unit, found[unit.run_id]) for unit in chunk if unit.run_id in found]
        if done:
            report.imported.extend(done)
            on_imported(done)
        return [unit for unit in chunk if unit.run_id not in found]

    def _import_once(
        self,
        project_id: int,
        chunk: Sequence[Unit[K]],
        report: ImportReport[K],
        on_imported: Callable[[Sequence[tuple[Unit[K], list[int]]]], None],
    ) -> Exception | None:
        tasks = [task for unit in chunk for task in unit.tasks]
        report.requests += 1
        started = time.perf_counter()
        try:
            response = self._client.projects.import_tasks(
                id=project_id,
                request=cast(Sequence[ImportApiRequest], tasks),  # plain dicts: sent as given
                return_task_ids=True,
                request_options=self._options(),
            )
        except Rebalanced:
            raise
        except Exception as exc:
            self._metrics.import_latency.labels(classify(exc).value).observe(time.perf_counter() - started)
            self._metrics.ls_errors.labels(error_kind(exc)).inc()
            return exc
        del tasks
        self._metrics.import_latency.labels("ok").observe(time.perf_counter() - started)
        task_ids = [int(i) for i in getattr(response, "task_ids", None) or []]  # an extra field
        count = sum(len(unit.tasks) for unit in chunk)
        if len(task_ids) != count:
            log.warning(
                "Label Studio returned %d task ids for %d tasks",
                len(task_ids),
                count,
                extra={"project_id": project_id},
            )
        at = 0
        done: list[tuple[Unit[K], list[int]]] = []
        for unit in chunk:
            done.append((unit, task_ids[at : at + len(unit.tasks)]))
            at += len(unit.tasks)
        report.imported.extend(done)
        on_imported(done)
        self._metrics.tasks_imported.labels(str(project_id)).inc(count)
        return None

    def existing(self, project_id: int, run_ids: Collection[str]) -> dict[str, list[int]]:
        """The ids of the tasks each of ``run_ids`` already has in the project (absent: none).

        Uses the data manager's ``filter:tasks:data.run_id`` filter, as many run_ids a query as fit in
        ``LOOKUP_QUERY_BYTES`` (:func:`lookup_queries`).

        Raises:
            LabelStudioUnavailable: the lookup failed (any error: an unanswered question is not "no").
            ProjectGone: the project does not exist.
        """
        found: dict[str, list[int]] = {}
        for chunk, query in lookup_queries(sorted(set(run_ids))):
            try:
                pager: Iterable[Any] = self._client.tasks.list(
                    project=project_id,
                    query=query,
                    fields="task_only",
                    page_size=LOOKUP_PAGE_SIZE,
                    request_options=self._options(),
                )
                for task in pager:
                    run_id = (task.data or {}).get("run_id")
                    if isinstance(run_id, str) and run_id in chunk and task.id is not None:
                        found.setdefault(run_id, []).append(task.id)
            except Rebalanced:
                raise
            except Exception as exc:
                self._metrics.ls_errors.labels(error_kind(exc)).inc()
                if classify(exc) is Verdict.NOT_FOUND:
                    raise ProjectGone(project_id) from exc
                raise unavailable(exc) from exc
        return found

    def reachable(self, timeout_s: float = 2.0) -> bool:
        """Whether Label Studio answers its health check."""
        try:
            response = httpx.get(f"{self._base_url}/health", timeout=timeout_s)
        except httpx.HTTPError:
            return False
        return response.status_code == httpx.codes.OK


def lookup_queries(run_ids: Sequence[str], max_bytes: int = LOOKUP_QUERY_BYTES) -> list[tuple[set[str], str]]:
    """``run_ids`` split into data-manager queries (JSON text), each within ``max_bytes`` URL-encoded.

    Each query asks for tasks whose ``data.run_id`` equals any of its run_ids; a run_id that does
    not fit alone still gets a query of its own.
    """
    out: list[tuple[set[str], str]] = []
    chunk: list[str] = []

    def text(ids: list[str]) -> str:
        items = [
            {"filter": "filter:tasks:data.run_id", "operator": "equal", "type": "String", "value": r}
            for r in ids
        ]
        return json.dumps({"filters": {"conjunction": "or", "items": items}})

    for run_id in run_ids:
        if chunk and len(quote(text([*chunk, run_id]), safe="")) > max_bytes:
            out.append((set(chunk), text(chunk)))
            chunk = []
        chunk.append(run_id)
    if chunk:
        out.append((set(chunk), text(chunk)))
    return out


__all__ = ["LOOKUP_QUERY_BYTES", "ImportReport", "LabelStudioSink", "Unit", "lookup_queries", "requests_of"]

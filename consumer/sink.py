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

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.request_options import RequestOptions
from label_studio_sdk.types import ImportApiRequest

from labelstudio_ingest.consumer.errors import (
    ProjectGone,
    Rebalanced,
    Verdict,
    classify,
    describe,
    error_kind,
    unavailable,
)
from labelstudio_ingest.consumer.metrics import Metrics

log = logging.getLogger(__name__)

LOOKUP_CHUNK = 50
"""run_ids per task-list query (they travel in the URL)."""
LOOKUP_PAGE_SIZE = 500

K = TypeVar("K")


@dataclass(eq=False, slots=True)
class Unit(Generic[K]):
    """The tasks of one run: imported together or not at all."""

    key: K
    tasks: list[dict[str, Any]]


@dataclass(slots=True)
class ImportReport(Generic[K]):
    """What a (possibly bisected) import did; filled as it goes, so it is valid after a raise."""

    imported: list[tuple[Unit[K], list[int]]] = field(default_factory=list)
    rejected: list[tuple[Unit[K], Exception]] = field(default_factory=list)
    requests: int = 0


class LabelStudioSink:
    """Imports tasks into Label Studio projects; one request at a time."""

    def __init__(
        self,
        client: LabelStudio,
        base_url: str,
        *,
        timeout_s: float,
        metrics: Metrics,
    ) -> None:
        self._client = client
        self._base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._metrics = metrics
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
    ) -> None:
        """Import every unit into the project, splitting the request to isolate 4xx-rejected units.

        ``on_imported`` gets the units of each successful request with their task ids (record
        them right away: a later request of the same call may still fail). Rejected units end
        up in ``report.rejected``. ``before_request`` gets the units of each request (the first,
        each half of a split) right before it is sent: the caller announces them in the ledger.

        Raises:
            LabelStudioUnavailable: Label Studio is down, timed out, or answered 5xx/408/409/429/401/403.
            ProjectGone: the project does not exist (404).
        """
        pending: list[Sequence[Unit[K]]] = [units] if units else []
        while pending:
            chunk = pending.pop()
            if before_request is not None:
                before_request(chunk)
            error = self._import_once(project_id, chunk, report, on_imported)
            if error is None:
                continue
            if len(chunk) == 1:
                report.rejected.append((chunk[0], error))
                log.warning(
                    "Label Studio rejected a run",
                    extra={"project_id": project_id, "error": describe(error)},
                )
            else:
                half = len(chunk) // 2
                pending.extend([chunk[half:], chunk[:half]])

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
            verdict = classify(exc)
            self._metrics.import_latency.labels(verdict.value).observe(time.perf_counter() - started)
            self._metrics.ls_errors.labels(error_kind(exc)).inc()
            if verdict is Verdict.TRANSIENT:
                raise unavailable(exc) from exc
            if verdict is Verdict.NOT_FOUND:
                raise ProjectGone(project_id) from exc
            return exc
        self._metrics.import_latency.labels("ok").observe(time.perf_counter() - started)
        task_ids = [int(i) for i in getattr(response, "task_ids", None) or []]  # an extra field
        if len(task_ids) != len(tasks):
            log.warning(
                "Label Studio returned %d task ids for %d tasks",
                len(task_ids),
                len(tasks),
                extra={"project_id": project_id},
            )
        at = 0
        done: list[tuple[Unit[K], list[int]]] = []
        for unit in chunk:
            done.append((unit, task_ids[at : at + len(unit.tasks)]))
            at += len(unit.tasks)
        report.imported.extend(done)
        on_imported(done)
        self._metrics.tasks_imported.labels(str(project_id)).inc(len(tasks))
        return None

    def existing(self, project_id: int, run_ids: Collection[str]) -> dict[str, list[int]]:
        """The ids of the tasks each of ``run_ids`` already has in the project (absent: none).

        Uses the data manager's ``filter:tasks:data.run_id`` filter, ``LOOKUP_CHUNK`` run_ids a query.

        Raises:
            LabelStudioUnavailable: the lookup failed (any error: an unanswered question is not "no").
            ProjectGone: the project does not exist.
        """
        found: dict[str, list[int]] = {}
        wanted = sorted(set(run_ids))
        for start in range(0, len(wanted), LOOKUP_CHUNK):
            chunk = wanted[start : start + LOOKUP_CHUNK]
            query = {
                "filters": {
                    "conjunction": "or",
                    "items": [
                        {
                            "filter": "filter:tasks:data.run_id",
                            "operator": "equal",
                            "type": "String",
                            "value": r,
                        }
                        for r in chunk
                    ],
                }
            }
            try:
                pager: Iterable[Any] = self._client.tasks.list(
                    project=project_id,
                    query=json.dumps(query),
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


__all__ = ["LOOKUP_CHUNK", "ImportReport", "LabelStudioSink", "Unit"]

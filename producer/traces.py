"""Which trace an LLM run belongs to: its root run id, and the LangSmith and OpenTelemetry trace ids.

LangChain tells a callback only a run's direct parent. :class:`TraceRoots` remembers, for every
chain, agent step and tool the handler sees start, the root of its trace, so an LLM call deep in an
agent gets the id of the outermost run: the same for every LLM call of that agent run. A run whose
parent the handler never saw (it was attached below the root) takes that parent as its root, the
nearest run it knows. Entries leave at their run's end or error, and at most ``max_runs`` are kept
(the oldest go first), so runs that never end cannot grow memory.

The LangSmith and OpenTelemetry ids come from the app's active context, read only when the app has
imported ``langsmith.run_helpers`` or ``opentelemetry.trace`` itself: without them there is no
active run tree or span, so nothing is imported here and neither package is a dependency.
"""

from __future__ import annotations

import sys
import threading
from typing import Any
from uuid import UUID

DEFAULT_MAX_RUNS = 10_000
"""Chains, agent steps and tools in flight whose roots are remembered; beyond it the oldest are forgotten."""

_OTEL_INVALID_TRACE_ID = 0


class TraceRoots:
    """The root run of every chain, agent step and tool in flight, bounded. Thread-safe.

    Reads and single inserts rely on ``dict`` being atomic; only eviction takes a lock.
    """

    def __init__(self, max_runs: int = DEFAULT_MAX_RUNS) -> None:
        if max_runs < 1:
            raise ValueError("max_runs must be at least 1")
        self.max_runs = max_runs
        self._roots: dict[UUID, UUID] = {}
        self._evict_lock = threading.Lock()

    def started(self, run_id: UUID, parent_run_id: UUID | None) -> None:
        """A chain, agent step or tool started: remember its root."""
        self._roots[run_id] = self.root_of(run_id, parent_run_id)
        if len(self._roots) > self.max_runs:
            self._evict()

    def ended(self, run_id: UUID) -> None:
        """A chain, agent step or tool ended or failed: forget it (its LLM calls have all started)."""
        self._roots.pop(run_id, None)

    def root_of(self, run_id: UUID, parent_run_id: UUID | None) -> UUID:
        """The root of a run: its parent's root, else its parent (the nearest run known), else itself."""
        if parent_run_id is None:
            return run_id
        return self._roots.get(parent_run_id, parent_run_id)

    def __len__(self) -> int:
        return len(self._roots)

    def _evict(self) -> None:
        with self._evict_lock:
            while len(self._roots) > self.max_runs:
                try:
                    self._roots.pop(next(iter(self._roots)), None)
                except (StopIteration, RuntimeError):  # emptied or changed by another thread meanwhile
                    return


def trace_link(root_run_id: UUID) -> dict[str, Any]:
    """The event's ``trace`` (a :class:`~labelstudio_ingest.schemas.TraceLink` as plain data, in its
    field order): the root run id, and the ids of the active LangSmith trace and OpenTelemetry span."""
    link: dict[str, Any] = {"root_run_id": root_run_id}
    langsmith_id = langsmith_trace_id()
    if langsmith_id is not None:
        link["langsmith_trace_id"] = langsmith_id
    otel_id = otel_trace_id()
    if otel_id is not None:
        link["otel_trace_id"] = otel_id
    return link


def langsmith_trace_id() -> UUID | None:
    """The trace id of LangSmith's active run tree (``@traceable``, or LangChain with LangSmith
    tracing on); None when there is none or LangSmith was never imported by the app."""
    helpers = sys.modules.get("langsmith.run_helpers")
    if helpers is None:
        return None
    try:
        run_tree = helpers.get_current_run_tree()
        trace_id = getattr(run_tree, "trace_id", None) if run_tree is not None else None
        if trace_id is None:
            return None
        return trace_id if isinstance(trace_id, UUID) else UUID(str(trace_id))
    except Exception:  # another LangSmith version's shape: no link rather than no event
        return None


def otel_trace_id() -> str | None:
    """The trace id of the active OpenTelemetry span as 32 lowercase hex digits; None when no valid
    span is active or OpenTelemetry was never imported by the app."""
    api = sys.modules.get("opentelemetry.trace")
    if api is None:
        return None
    try:
        trace_id = api.get_current_span().get_span_context().trace_id
        if not isinstance(trace_id, int) or not _OTEL_INVALID_TRACE_ID < trace_id < 2**128:
            return None
        return f"{trace_id:032x}"
    except Exception:
        return None

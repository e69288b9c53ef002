"""Trace roots followed through chains and tools, and the LangSmith and OpenTelemetry trace ids."""

from __future__ import annotations

import sys
from typing import Any
from uuid import UUID, uuid4

import pytest
from langsmith.run_helpers import tracing_context
from langsmith.run_trees import RunTree

from labelstudio_ingest.producer.traces import TraceRoots, langsmith_trace_id, otel_trace_id, trace_link

OTEL_TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C


def _otel() -> Any:
    """opentelemetry.trace, or a skip where it is not installed (the Python-version matrix)."""
    return pytest.importorskip("opentelemetry.trace")


def _span(trace_id: int) -> Any:
    api = _otel()
    return api.NonRecordingSpan(
        api.SpanContext(trace_id=trace_id, span_id=0xB7AD6B7169203331, is_remote=False)
    )


def test_every_run_below_a_root_has_that_root() -> None:
    roots = TraceRoots()
    agent, step, tool = uuid4(), uuid4(), uuid4()
    roots.started(agent, None)
    roots.started(step, agent)
    roots.started(tool, step)
    assert roots.root_of(uuid4(), tool) == agent
    assert roots.root_of(uuid4(), step) == agent


def test_a_run_under_an_unknown_parent_takes_that_parent_and_a_lone_run_itself() -> None:
    roots = TraceRoots()
    parent, run = uuid4(), uuid4()
    assert roots.root_of(run, parent) == parent
    assert roots.root_of(run, None) == run


def test_runs_are_forgotten_at_their_end_and_memory_stays_bounded() -> None:
    roots = TraceRoots(max_runs=100)
    agent = uuid4()
    roots.started(agent, None)
    roots.ended(agent)
    assert len(roots) == 0
    for _ in range(1_000):  # runs that never end
        roots.started(uuid4(), None)
    assert len(roots) == 100


def test_no_outside_trace_ids_without_an_active_trace() -> None:
    assert langsmith_trace_id() is None
    assert otel_trace_id() is None
    root = uuid4()
    assert trace_link(root) == {"root_run_id": root}


def test_the_active_langsmith_run_trees_trace_id_is_read() -> None:
    run_tree = RunTree(name="agent", run_type="chain")
    with tracing_context(parent=run_tree, enabled=False):
        assert langsmith_trace_id() == run_tree.trace_id
        assert trace_link(run_tree.id)["langsmith_trace_id"] == run_tree.trace_id


def test_the_active_opentelemetry_trace_id_is_read_as_32_hex_digits() -> None:
    trace = _otel()
    with trace.use_span(_span(OTEL_TRACE_ID)):
        assert otel_trace_id() == "0af7651916cd43dd8448eb211c80319c"
    with trace.use_span(_span(0)):  # an invalid span context
        assert otel_trace_id() is None


def test_neither_package_is_looked_at_unless_the_app_imported_it(monkeypatch: pytest.MonkeyPatch) -> None:
    trace, span = _otel(), _span(OTEL_TRACE_ID)
    monkeypatch.delitem(sys.modules, "opentelemetry.trace")
    monkeypatch.delitem(sys.modules, "langsmith.run_helpers")
    run_tree = RunTree(name="agent", run_type="chain")
    with trace.use_span(span), tracing_context(parent=run_tree, enabled=False):
        assert trace_link(UUID(int=1)) == {"root_run_id": UUID(int=1)}

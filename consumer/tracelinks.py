"""The trace of a run in its tasks: ``data`` columns reviewers filter on, ``meta.trace``, and a link.

An event's optional ``trace`` (see ``schemas.TraceLink``) becomes::

    data: {"trace_id": "<root run id>", "langsmith_trace_id": "...", "otel_trace_id": "...",
           "trace_url": "<INGEST_TRACE_URL_TEMPLATE filled in>"}
    meta: {"trace": {"root_run_id": ..., "langsmith_trace_id": ..., "otel_trace_id": ..., "url": ...}}

Only the ids the event has become columns; ``meta.trace`` is null for a run without a trace.
``data.trace_id`` is the same for every LLM call of one agent run, so filtering the data manager on it
shows the whole run. The link template names its fields in
braces: ``{trace_id}`` (the root run id), ``{root_run_id}``, ``{langsmith_trace_id}``,
``{otel_trace_id}`` and ``{run_id}``; a task gets no link when the event lacks a field it names.
"""

from __future__ import annotations

import string
from typing import Any

from labelstudio_ingest.schemas import Event

TEMPLATE_FIELDS = ("trace_id", "root_run_id", "langsmith_trace_id", "otel_trace_id", "run_id")
"""The names a trace URL template may use."""


def check_url_template(template: str) -> str:
    """The template, if it is an http(s) URL naming only :data:`TEMPLATE_FIELDS`, plainly.

    Raises:
        ValueError: for another scheme, an unknown name, or attribute, index or format specs.
    """
    if not template.startswith(("https://", "http://")):
        raise ValueError("must be an http:// or https:// URL")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"is not a valid template: {exc}") from None
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS or spec or conversion:
            allowed = ", ".join("{" + field + "}" for field in TEMPLATE_FIELDS)
            raise ValueError(f"may name only {allowed}, not {{{name}}}")
    return template


def trace_columns(
    event: Event, url_template: str | None = None
) -> tuple[dict[str, str], dict[str, Any] | None]:
    """The ``data`` columns and the ``meta.trace`` of the run's tasks (none without a trace)."""
    trace = event.trace
    if trace is None:
        return {}, None
    ids = {
        "root_run_id": None if trace.root_run_id is None else str(trace.root_run_id),
        "langsmith_trace_id": None if trace.langsmith_trace_id is None else str(trace.langsmith_trace_id),
        "otel_trace_id": trace.otel_trace_id,
    }
    url = _url(url_template, {**ids, "trace_id": ids["root_run_id"], "run_id": str(event.run_id)})
    data = {
        name: value
        for name, value in (
            ("trace_id", ids["root_run_id"]),
            ("langsmith_trace_id", ids["langsmith_trace_id"]),
            ("otel_trace_id", ids["otel_trace_id"]),
            ("trace_url", url),
        )
        if value is not None
    }
    return data, {**ids, "url": url}


def _url(template: str | None, values: dict[str, str | None]) -> str | None:
    if template is None:
        return None
    try:
        return template.format_map({k: v for k, v in values.items() if v is not None})
    except (KeyError, ValueError, IndexError):  # the event lacks a field the template names
        return None

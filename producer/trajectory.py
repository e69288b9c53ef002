"""Whole agent runs as one event: what the handler records per trace, and the trajectory it publishes.

With ``granularity="trace"`` the handler gives every callback of a trace to :class:`TrajectoryRecorder`
instead of publishing each LLM call. A trace starts at the outermost run the handler sees (the chain
or graph it was attached to, or an LLM called alone) and ends with that run; :func:`build_trajectory`
then makes one ``TrajectoryEvent`` as plain data in the models' field order (like ``builder.py``).

Bounds (``schemas.Limits``): a trace keeps at most ``max_trajectory_steps`` steps, dropping from the
middle (the first half and the latest steps stay); every text is cut to ``max_step_text_chars`` as it
is recorded; :func:`fit` drops further middle steps while the encoded event is too large. Each cut is
counted in the event's ``truncated``, never silent. At most ``max_traces`` traces are in flight;
the oldest is forgotten beyond that (its end then publishes nothing), so runs that never end cannot
grow memory.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from langchain_core.messages import BaseMessage, convert_to_messages
from langchain_core.outputs import ChatGeneration, LLMResult

from labelstudio_ingest.producer.builder import (
    EventContext,
    Redact,
    WireEvent,
    WireObject,
    json_object,
    model_name,
    new_event_id,
    redact_json,
    redact_message,
    to_json,
    to_message,
    token_usage,
)
from labelstudio_ingest.schemas import SCHEMA_VERSION, Limits, encode_plain

DEFAULT_MAX_TRACES = 1_000
"""Traces recorded at once; beyond it the oldest is forgotten."""

CUT_MARKER = " … [cut {n} characters]"
"""Ends a text the producer shortened to ``max_step_text_chars``."""

_USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")


@dataclass(slots=True)
class Step:
    """One LLM or tool call of a trace, filled in at its start and at its end."""

    index: int
    type: str
    run_id: UUID
    started_at: datetime
    started: float
    name: str | None = None
    messages: list[WireObject] = field(default_factory=list)
    output: WireObject | None = None
    tool_call_id: str | None = None
    arguments: Any = None
    result: str | None = None
    error: WireObject | None = None
    token_usage: WireObject | None = None
    ended_at: datetime | None = None
    latency_ms: float | None = None
    full_input: list[WireObject] = field(default_factory=list)
    """An LLM step's whole input (not published): what the next LLM step's new messages are cut from."""


@dataclass(slots=True)
class Trace:
    """What the handler saw of one trace so far."""

    root_run_id: UUID
    owner_run_id: UUID
    """The outermost run the handler saw: its end (or error) ends the trace."""
    kept: bool
    parent_run_id: UUID | None = None
    trace: WireObject | None = None
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    input: list[WireObject] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    next_index: int = 0
    steps_dropped: int = 0
    dropped_from: int | None = None
    texts_cut: int = 0
    chars_cut: int = 0
    shown: list[WireObject] = field(default_factory=list)
    """The messages the trajectory has shown so far (input, then the last LLM call's input and answer)."""
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    started: float = field(default_factory=time.perf_counter)

    def cut(self, text: str, limit: int) -> str:
        """``text`` within ``limit`` characters, counted when shortened."""
        if len(text) <= limit:
            return text
        marker = CUT_MARKER.format(n=len(text))
        keep = max(limit - len(marker), 0)
        self.texts_cut += 1
        self.chars_cut += len(text) - keep
        return text[:keep] + marker[: limit - keep]

    def cut_message(self, message: WireObject, limit: int) -> WireObject:
        content = message["content"]
        if len(content) <= limit:
            return message
        return {**message, "content": self.cut(content, limit)}


class TrajectoryRecorder:
    """The traces in flight and the steps of each, bounded (see the module). Thread-safe enough:
    each callback touches one trace, and the maps are changed under a lock."""

    def __init__(self, limits: Limits, max_traces: int = DEFAULT_MAX_TRACES) -> None:
        self.limits = limits
        self.max_traces = max_traces
        self._traces: dict[UUID, Trace] = {}
        self._owners: dict[UUID, UUID] = {}
        self._steps: dict[UUID, tuple[Trace, Step]] = {}
        self._lock = threading.Lock()
        self.forgotten = 0
        """Traces evicted unfinished because ``max_traces`` were in flight."""

    def __len__(self) -> int:
        return len(self._traces)

    def has(self, root_run_id: UUID) -> bool:
        """Whether a trace rooted at ``root_run_id`` is being recorded."""
        return root_run_id in self._traces

    def begin(
        self,
        root_run_id: UUID,
        owner_run_id: UUID,
        *,
        kept: bool,
        parent_run_id: UUID | None,
        inputs: Any,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
        trace: WireObject | None,
    ) -> Trace:
        """Start recording a trace whose outermost run (so far) is ``owner_run_id``."""
        record = Trace(root_run_id=root_run_id, owner_run_id=owner_run_id, kept=kept)
        if kept:
            record.parent_run_id = parent_run_id
            record.trace = trace
            record.tags = [str(t) for t in tags or ()]
            record.metadata = json_object(metadata)
            limit = self.limits.max_step_text_chars
            record.input = [record.cut_message(m, limit) for m in input_messages(inputs)]
            record.shown = list(record.input)
        with self._lock:
            self._traces[root_run_id] = record
            self._owners[owner_run_id] = root_run_id
            while len(self._traces) > self.max_traces:
                oldest = next(iter(self._traces))
                evicted = self._traces.pop(oldest)
                self._owners.pop(evicted.owner_run_id, None)
                self._forget_steps(evicted)
                self.forgotten += 1
        return record

    def llm_started(
        self, root_run_id: UUID, run_id: UUID, conversation: list[WireObject], name: str | None
    ) -> None:
        """An LLM call of the trace started with ``conversation`` (contract messages), asking ``name``."""
        record = self._traces.get(root_run_id)
        if record is None or not record.kept:
            return
        step = self._add_step(record, "llm", run_id)
        step.name = name
        limit = self.limits.max_step_text_chars
        shown = record.shown
        prefix = len(shown) if conversation[: len(shown)] == shown else 0
        step.messages = [record.cut_message(m, limit) for m in conversation[prefix:]]
        step.full_input = conversation

    def llm_ended(self, run_id: UUID, response: LLMResult | None, error: BaseException | None) -> None:
        """The LLM call ended: its first answer, token usage and model name (or its error)."""
        found = self._pop_step(run_id)
        if found is None:
            return
        record, step = found
        if response is not None and response.generations and response.generations[0]:
            generation = response.generations[0][0]
            message = (
                to_message(generation.message)
                if isinstance(generation, ChatGeneration)
                else {"role": "assistant", "content": str(generation.text), "tool_calls": []}
            )
            step.output = record.cut_message(message, self.limits.max_step_text_chars)
            step.token_usage = token_usage(response)
            record.shown = [*step.full_input, message]
        step.name = model_name(response, {}, {}) or step.name
        if error is not None:
            step.error = _error(error)
        step.full_input = []
        _end(step)

    def tool_started(
        self, root_run_id: UUID, run_id: UUID, name: str | None, arguments: Any, tool_call_id: str | None
    ) -> None:
        """A tool of the trace started with ``arguments`` (an object, or the input text)."""
        record = self._traces.get(root_run_id)
        if record is None or not record.kept:
            return
        step = self._add_step(record, "tool", run_id)
        step.name = name
        step.tool_call_id = tool_call_id
        limit = self.limits.max_step_text_chars
        value = json_object(arguments) if isinstance(arguments, Mapping) else str(arguments)
        if isinstance(value, dict) and len(json.dumps(value, ensure_ascii=False)) > limit:
            value = json.dumps(value, ensure_ascii=False)
        step.arguments = record.cut(value, limit) if isinstance(value, str) else value

    def tool_ended(self, run_id: UUID, output: Any, error: BaseException | None) -> None:
        """The tool ended with ``output`` (or failed with ``error``)."""
        found = self._pop_step(run_id)
        if found is None:
            return
        record, step = found
        if error is not None:
            step.error = _error(error)
        else:
            step.result = record.cut(output_text(output), self.limits.max_step_text_chars)
            if step.tool_call_id is None:
                call_id = getattr(output, "tool_call_id", None)
                step.tool_call_id = str(call_id) if call_id is not None else None
        _end(step)

    def finish(self, run_id: UUID) -> Trace | None:
        """The trace ``run_id`` owns, if it owns one: it ended, so it leaves the recorder."""
        with self._lock:
            root = self._owners.pop(run_id, None)
            if root is None:
                return None
            record = self._traces.pop(root, None)
            if record is not None:
                self._forget_steps(record)
            return record

    def _forget_steps(self, record: Trace) -> None:
        """Drop the trace's steps still waiting for their end (dropped ones included)."""
        for run_id in [run_id for run_id, (owner, _) in self._steps.items() if owner is record]:
            del self._steps[run_id]

    def _add_step(self, record: Trace, kind: str, run_id: UUID) -> Step:
        """A new step, numbered under the lock: a graph runs parallel tool calls in threads."""
        with self._lock:
            step = Step(
                index=record.next_index,
                type=kind,
                run_id=run_id,
                started_at=datetime.now(timezone.utc),
                started=time.perf_counter(),
            )
            record.next_index += 1
            record.steps.append(step)
            if len(record.steps) > max(self.limits.max_trajectory_steps, 1):
                drop_steps(record, 1)
            self._steps[run_id] = (record, step)
        return step

    def _pop_step(self, run_id: UUID) -> tuple[Trace, Step] | None:
        with self._lock:
            return self._steps.pop(run_id, None)


def drop_steps(record: Trace, count: int) -> None:
    """Leave out ``count`` steps from the middle of the trace (counted in ``truncated``)."""
    for _ in range(count):
        if not record.steps:
            return
        dropped = record.steps.pop(len(record.steps) // 2)
        record.steps_dropped += 1
        record.dropped_from = (
            dropped.index if record.dropped_from is None else min(record.dropped_from, dropped.index)
        )


def build_trajectory(
    record: Trace,
    run_id: UUID,
    context: EventContext,
    target: WireObject,
    *,
    max_text_chars: int,
    outputs: Any = None,
    error: BaseException | None = None,
) -> WireEvent:
    """The trajectory event of a finished trace, as plain data in ``TrajectoryEvent``'s field order."""
    redact: Redact = context.redact or _identity
    ended_at = datetime.now(timezone.utc)
    steps = list(record.steps)
    inputs = record.input or next((s.messages for s in steps if s.type == "llm" and s.messages), [])
    if not inputs:
        inputs = [{"role": "user", "content": "", "tool_calls": []}]
    output = None
    if error is None:
        text = output_text(outputs) if outputs is not None else None
        if not text:
            text = next((s.output["content"] for s in reversed(steps) if s.output is not None), None)
        output = None if text is None else record.cut(text, max_text_chars)
    event: WireEvent = {
        "schema_version": SCHEMA_VERSION,
        "event_id": new_event_id(),
        "run_id": run_id,
    }
    if record.parent_run_id is not None:
        event["parent_run_id"] = record.parent_run_id
    if record.trace is not None:
        event["trace"] = record.trace
    event["event_time"] = ended_at
    event["generations"] = []
    name = next((s.name for s in steps if s.type == "llm" and s.name), None)
    if name is not None:
        event["model_name"] = redact(name)
    event["invocation_params"] = {}
    usage = _summed_usage(steps)
    if usage is not None:
        event["token_usage"] = usage
    event["started_at"] = record.started_at
    event["ended_at"] = ended_at
    event["latency_ms"] = max((time.perf_counter() - record.started) * 1000.0, 0.0)
    event["tags"] = [redact(t) for t in record.tags]
    event["metadata"] = redact_json(record.metadata, redact)
    event["source"] = context.source
    if error is not None:
        event["error"] = _error(error, redact)
    event["target"] = target
    event["kind"] = "trajectory"
    event["input"] = [redact_message(m, redact) for m in inputs]
    event["steps"] = [_wire_step(s, redact) for s in steps]
    if output is not None:
        event["output"] = redact(output)
    truncated = _truncated(record)
    if truncated is not None:
        event["truncated"] = truncated
    return event


def fit(event: WireEvent, record: Trace, max_bytes: int) -> bytes | None:
    """The encoded event, with steps left out from the middle until it is at most ``max_bytes``
    (``truncated`` updated); None when even without steps it is too large."""
    value = encode_plain(event)
    while len(value) > max_bytes and event["steps"]:
        steps: list[WireObject] = event["steps"]
        dropped = steps.pop(len(steps) // 2)
        record.steps_dropped += 1
        index = dropped["index"]
        record.dropped_from = index if record.dropped_from is None else min(record.dropped_from, index)
        event.pop("truncated", None)
        event["truncated"] = _truncated(record)
        value = encode_plain(event)
    return value if len(value) <= max_bytes else None


def input_messages(inputs: Any) -> list[WireObject]:
    """A run's input as contract messages: its messages (``{"messages": [...]}`` of a graph, a list
    of messages), else its one text, else its JSON as one user message; empty for no input."""
    if inputs is None or (isinstance(inputs, str | Mapping) and not inputs):
        return []
    if isinstance(inputs, str):
        return [_user(inputs)]
    if isinstance(inputs, BaseMessage):
        return [to_message(inputs)]
    if isinstance(inputs, Mapping):
        messages = inputs.get("messages")
        if isinstance(messages, list | tuple) and messages:
            converted = _messages(messages)
            if converted:
                return converted
        texts = [v for v in inputs.values() if isinstance(v, str)]
        if len(inputs) == 1 and texts:
            return [_user(texts[0])]
        if isinstance(inputs.get("input"), str):
            return [_user(inputs["input"])]
    if isinstance(inputs, list | tuple):
        converted = _messages(inputs)
        if converted:
            return converted
    return [_user(json.dumps(to_json(inputs), ensure_ascii=False))]


def output_text(output: Any) -> str:
    """A run's or tool's output as text: a message's text, the last message of ``{"messages": ...}``,
    the one text of a mapping (``output``/``answer``/``text`` first), else its JSON."""
    if isinstance(output, str):
        return output
    if isinstance(output, BaseMessage):
        return str(output.text)
    if isinstance(output, Mapping):
        messages = output.get("messages")
        if isinstance(messages, list | tuple) and messages and isinstance(messages[-1], BaseMessage):
            return str(messages[-1].text)
        for key in ("output", "answer", "text", "result"):
            if isinstance(output.get(key), str):
                return str(output[key])
        texts = [v for v in output.values() if isinstance(v, str)]
        if len(output) == 1 and texts:
            return texts[0]
    content = getattr(output, "content", None)
    if isinstance(content, str):
        return content
    return json.dumps(to_json(output), ensure_ascii=False)


def _messages(items: Sequence[Any]) -> list[WireObject]:
    try:
        return [to_message(m) for m in convert_to_messages(items)]
    except Exception:  # not messages after all: the caller falls back to JSON
        return []


def _user(text: str) -> WireObject:
    return {"role": "user", "content": text, "tool_calls": []}


def _wire_step(step: Step, redact: Redact) -> WireObject:
    out: WireObject = {"index": step.index, "type": step.type, "run_id": step.run_id}
    if step.name is not None:
        out["name"] = redact(step.name)
    out["messages"] = [redact_message(m, redact) for m in step.messages]
    if step.output is not None:
        out["output"] = redact_message(step.output, redact)
    if step.tool_call_id is not None:
        out["tool_call_id"] = redact(step.tool_call_id)
    if step.arguments is not None:
        out["arguments"] = redact_json(step.arguments, redact)
    if step.result is not None:
        out["result"] = redact(step.result)
    if step.error is not None:
        out["error"] = {"type": redact(step.error["type"]), "message": redact(step.error["message"])}
    if step.token_usage is not None:
        out["token_usage"] = step.token_usage
    out["started_at"] = step.started_at
    if step.ended_at is not None:
        out["ended_at"] = step.ended_at
    if step.latency_ms is not None:
        out["latency_ms"] = step.latency_ms
    return out


def _summed_usage(steps: Sequence[Step]) -> WireObject | None:
    found = [s.token_usage for s in steps if s.token_usage]
    if not found:
        return None
    totals: WireObject = {}
    for key in _USAGE_KEYS:
        counts = [u[key] for u in found if key in u]
        if counts:
            totals[key] = sum(counts)
    return totals or None


def _truncated(record: Trace) -> WireObject | None:
    if not (record.steps_dropped or record.texts_cut):
        return None
    out: WireObject = {"steps_dropped": record.steps_dropped}
    if record.dropped_from is not None:
        out["dropped_from"] = record.dropped_from
    out["texts_cut"] = record.texts_cut
    out["chars_cut"] = record.chars_cut
    return out


def _error(error: BaseException, redact: Redact | None = None) -> WireObject:
    r = redact or _identity
    return {"type": r(type(error).__name__), "message": r(str(error))}


def _end(step: Step) -> None:
    step.ended_at = datetime.now(timezone.utc)
    step.latency_ms = max((time.perf_counter() - step.started) * 1000.0, 0.0)


def _identity(text: str) -> str:
    return text

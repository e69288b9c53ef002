"""LangChain callback arguments → contract events, built as plain data on the app's thread.

The start of a run is captured as a :class:`RunStart` (inputs converted right away, since the app may
mutate its message lists afterwards); its end or error turns it into one event: a :data:`WireEvent`,
the fields of the contract's ``PromptEvent`` / ``ChatEvent`` as dicts and lists, which
:func:`~labelstudio_ingest.schemas.encode_plain` writes as the very bytes the validated models would
give. Building the models would validate again what this module shaped itself: that was about
half of the handler's time on the app's thread (docs/PERFORMANCE.md). The rules the models check
that LangChain's arguments could break (one list of generations per input, at least one input, no
empty conversation) are checked here, and the tests hold every shape the builder makes to the
contract, byte for byte.

Every string of the run that leaves the process passes through the optional ``redact`` hook:
prompts, message contents and names, tool calls (name, id, argument keys and values),
``tool_call_id``, generations (text, message, info), error type and message, tags, the model name,
and the keys and string values of metadata and invocation parameters. Only the handler's own
settings (the Label Studio target, the source service and host) and the contract's fixed
vocabulary (roles, kinds, field names) are not passed to it.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from enum import Enum
from typing import Any, Literal
from uuid import UUID

from langchain_core.messages import AIMessage, BaseMessage, ChatMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from pydantic import BaseModel, JsonValue

from labelstudio_ingest.schemas import SCHEMA_VERSION, Role, generations_problem

Redact = Callable[[str], str]
Kind = Literal["prompt", "chat"]
WireObject = dict[str, Any]
"""A part of the contract as plain data: a model's fields in their order, ``None`` ones left out."""
WireEvent = WireObject
"""A whole event as plain data, ready for :func:`~labelstudio_ingest.schemas.encode_plain`."""

_MAX_JSON_DEPTH = 32
_MAX_REPR_CHARS = 1_000

_ROLE_BY_TYPE = {
    "system": Role.SYSTEM,
    "developer": Role.SYSTEM,
    "human": Role.USER,
    "user": Role.USER,
    "ai": Role.ASSISTANT,
    "assistant": Role.ASSISTANT,
    "model": Role.ASSISTANT,
    "tool": Role.TOOL,
    "function": Role.TOOL,
}


def _identity(text: str) -> str:
    return text


@dataclass(slots=True)
class RunStart:
    """What a run's start told us, kept until its end or error."""

    kind: Kind
    prompts: list[str]
    """The prompts of a prompt run (empty for a chat run)."""
    conversations: list[list[WireObject]]
    """The conversations of a chat run, as contract messages (empty for a prompt run)."""
    parent_run_id: UUID | None
    tags: list[str]
    metadata: dict[str, JsonValue]
    invocation_params: dict[str, JsonValue]
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    started: float = field(default_factory=time.perf_counter)
    trace: WireObject | None = None
    """The run's :class:`~labelstudio_ingest.schemas.TraceLink` as plain data (``traces.trace_link``)."""

    @property
    def inputs_count(self) -> int:
        """How many prompts or conversations the run has."""
        return len(self.prompts) if self.kind == "prompt" else len(self.conversations)


def start_prompt_run(
    prompts: Sequence[str],
    *,
    parent_run_id: UUID | None,
    tags: Sequence[str] | None,
    metadata: Mapping[str, Any] | None,
    invocation_params: Mapping[str, Any] | None,
    trace: WireObject | None = None,
) -> RunStart:
    """The start of a text-completion run."""
    return RunStart(
        kind="prompt",
        prompts=[str(p) for p in prompts],
        conversations=[],
        parent_run_id=parent_run_id,
        tags=[str(t) for t in tags or ()],
        metadata=json_object(metadata),
        invocation_params=json_object(invocation_params),
        trace=trace,
    )


def start_chat_run(
    messages: Sequence[Sequence[BaseMessage]],
    *,
    parent_run_id: UUID | None,
    tags: Sequence[str] | None,
    metadata: Mapping[str, Any] | None,
    invocation_params: Mapping[str, Any] | None,
    trace: WireObject | None = None,
) -> RunStart:
    """The start of a chat-model run."""
    return RunStart(
        kind="chat",
        prompts=[],
        conversations=[[to_message(m) for m in conversation] for conversation in messages],
        parent_run_id=parent_run_id,
        tags=[str(t) for t in tags or ()],
        metadata=json_object(metadata),
        invocation_params=json_object(invocation_params),
        trace=trace,
    )


@dataclass(slots=True)
class SampledOut:
    """A run sampling left out at its start: only the arguments it came with, nothing converted,
    kept until its end (then counted) or its error (then built after all: failures are always kept)."""

    kind: Kind
    inputs: Sequence[Any]
    """The prompts (prompt run) or the conversations of LangChain messages (chat run)."""
    parent_run_id: UUID | None
    tags: Sequence[str] | None
    metadata: Mapping[str, Any] | None
    invocation_params: Mapping[str, Any] | None
    root_run_id: UUID
    started: float = field(default_factory=time.perf_counter)

    def start(self, trace: WireObject | None) -> RunStart:
        """The run's start as if it had been kept, with its real start time."""
        options: dict[str, Any] = {
            "parent_run_id": self.parent_run_id,
            "tags": self.tags,
            "metadata": self.metadata,
            "invocation_params": self.invocation_params,
            "trace": trace,
        }
        start = (
            start_prompt_run(self.inputs, **options)
            if self.kind == "prompt"
            else start_chat_run(self.inputs, **options)
        )
        elapsed = max(time.perf_counter() - self.started, 0.0)
        start.started = self.started
        start.started_at = datetime.fromtimestamp(time.time() - elapsed, start.started_at.tzinfo)
        return start


@dataclass(frozen=True, slots=True)
class EventContext:
    """What every event of one handler shares."""

    target_for: Callable[[datetime], WireObject]
    """The run's :class:`~labelstudio_ingest.schemas.Target` as plain data; called with the run's
    start time (the project name is formatted per run)."""
    source: WireObject
    """The handler's :class:`~labelstudio_ingest.schemas.Source` as plain data."""
    redact: Redact | None = None


def build_event(
    start: RunStart,
    run_id: UUID,
    context: EventContext,
    *,
    response: LLMResult | None = None,
    error: BaseException | None = None,
) -> WireEvent:
    """The event of a finished run: its ``response`` on success, its ``error`` (and any partial
    ``response``) on failure.

    Raises:
        Exception: whatever the redact hook raises, or a ``ValueError`` for a run the contract
            cannot express (no input, an empty conversation, a response without one list of
            generations per input).
    """
    ended_at = datetime.now(timezone.utc)
    latency_ms = max((time.perf_counter() - start.started) * 1000.0, 0.0)
    redact = context.redact or _identity
    inputs = start.inputs_count
    generations = to_generations(response, redact) if response is not None else []
    if error is not None and len(generations) != inputs:
        generations = []  # a partial answer that does not line up with the inputs is not kept
    _check_shape(start, len(generations), failed=error is not None)
    event: WireEvent = {
        "schema_version": SCHEMA_VERSION,
        "event_id": new_event_id(),
        "run_id": _uuid(run_id),
    }
    if start.parent_run_id is not None:
        event["parent_run_id"] = _uuid(start.parent_run_id)
    if start.trace is not None:
        event["trace"] = start.trace
    event["event_time"] = ended_at
    event["generations"] = generations
    name = model_name(response, start.invocation_params, start.metadata)
    if name is not None:
        event["model_name"] = redact(name)
    event["invocation_params"] = redact_json(start.invocation_params, redact)
    usage = token_usage(response) if response is not None else None
    if usage is not None:
        event["token_usage"] = usage
    event["started_at"] = start.started_at
    event["ended_at"] = ended_at
    event["latency_ms"] = latency_ms
    event["tags"] = [redact(tag) for tag in start.tags] if context.redact else start.tags
    event["metadata"] = redact_json(start.metadata, redact)
    event["source"] = context.source
    if error is not None:
        event["error"] = {"type": redact(type(error).__name__), "message": redact(str(error))}
    event["target"] = context.target_for(start.started_at)
    event["kind"] = start.kind
    if start.kind == "prompt":
        event["prompts"] = [redact(p) for p in start.prompts] if context.redact else start.prompts
    else:
        event["messages"] = [[redact_message(m, redact) for m in conv] for conv in start.conversations]
    return event


def _check_shape(start: RunStart, generation_lists: int, *, failed: bool) -> None:
    """The contract's rules on a run's shape that LangChain's arguments could break."""
    if start.inputs_count == 0:
        raise ValueError(f"a {start.kind} run needs at least one input; this one has none")
    for i, conversation in enumerate(start.conversations):
        if not conversation:
            raise ValueError(f"conversation {i} of the run has no messages")
    problem = generations_problem(generation_lists, start.inputs_count, failed=failed)
    if problem:
        raise ValueError(problem)


def _uuid(value: UUID | str) -> UUID:
    """A run id as a UUID (LangChain passes UUIDs; a hand-made call may pass their text)."""
    return value if isinstance(value, UUID) else UUID(str(value))


def new_event_id() -> UUID:
    """A random (version 4) UUID for ``event_id``.

    Not ``uuid.uuid4()``: its ``os.urandom`` releases the GIL, and taking it back from a busy
    background thread can cost the app's thread a whole switch interval. Uniqueness is all an
    event id needs; ``random`` is seeded from the OS and re-seeded after ``fork``.
    """
    return UUID(int=random.getrandbits(128), version=4)


# -- messages and generations -------------------------------------------------------------------------


def role_of(message: BaseMessage) -> Role:
    """The contract role of a LangChain message (``HumanMessage`` → user, ``AIMessage`` → assistant...)."""
    if isinstance(message, ChatMessage):
        return _ROLE_BY_TYPE.get(message.role.strip().lower(), Role.USER)
    kind = message.type.removesuffix("MessageChunk").lower()
    return _ROLE_BY_TYPE.get(kind, Role.USER)


def to_message(message: BaseMessage) -> WireObject:
    """A LangChain message as a contract :class:`~labelstudio_ingest.schemas.Message`, with its
    tool calls or the call it answers."""
    out: WireObject = {"role": role_of(message).value, "content": str(message.text)}
    if message.name is not None:
        out["name"] = str(message.name)
    out["tool_calls"] = (
        [to_tool_call(call) for call in message.tool_calls] if isinstance(message, AIMessage) else []
    )
    if isinstance(message, ToolMessage):
        out["tool_call_id"] = str(message.tool_call_id)
    return out


def to_tool_call(call: Mapping[str, Any]) -> WireObject:
    """A LangChain tool call as a contract :class:`~labelstudio_ingest.schemas.ToolCall`."""
    out: WireObject = {"name": str(call["name"]), "args": json_object(call.get("args"))}
    if call.get("id") is not None:
        out["id"] = str(call["id"])
    return out


def redact_message(message: WireObject, redact: Redact) -> WireObject:
    """The message with every string of it redacted: content, name, tool calls, ``tool_call_id``."""
    if redact is _identity:
        return message
    out: WireObject = {}
    for key, value in message.items():
        if key == "role":
            out[key] = value
        elif key == "tool_calls":
            out[key] = [_redact_tool_call(call, redact) for call in value]
        else:  # content, name, tool_call_id, and whatever a message may carry later
            out[key] = redact(value) if isinstance(value, str) else redact_json(value, redact)
    return out


def _redact_tool_call(call: WireObject, redact: Redact) -> WireObject:
    out: WireObject = {"name": redact(call["name"]), "args": redact_json(call["args"], redact)}
    if "id" in call:
        out["id"] = redact(call["id"])
    return out


def to_generations(response: LLMResult, redact: Redact = _identity) -> list[list[WireObject]]:
    """One list of contract generations per input; chat generations keep their assistant message."""
    out: list[list[WireObject]] = []
    for per_input in response.generations:
        generations: list[WireObject] = []
        for generation in per_input:
            item: WireObject = {"text": redact(str(generation.text))}
            if isinstance(generation, ChatGeneration):
                item["message"] = redact_message(to_message(generation.message), redact)
            if generation.generation_info:
                item["generation_info"] = redact_json(json_object(generation.generation_info), redact)
            generations.append(item)
        out.append(generations)
    return out


# -- usage and model name -----------------------------------------------------------------------------


def token_usage(response: LLMResult) -> WireObject | None:
    """Token counts as a contract :class:`~labelstudio_ingest.schemas.TokenUsage`: summed
    ``usage_metadata`` of chat messages, else ``llm_output["token_usage"]``; None when unknown."""
    totals = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    found = False
    for per_input in response.generations:
        for generation in per_input:
            message = generation.message if isinstance(generation, ChatGeneration) else None
            usage = getattr(message, "usage_metadata", None)
            if usage:
                found = True
                totals["prompt_tokens"] += _count(usage.get("input_tokens"))
                totals["completion_tokens"] += _count(usage.get("output_tokens"))
                totals["total_tokens"] += _count(usage.get("total_tokens"))
    if found:
        return dict(totals)
    llm_output = response.llm_output or {}
    reported = llm_output.get("token_usage") or llm_output.get("usage")
    if not isinstance(reported, Mapping):
        return None
    prompt = _count_or_none(reported.get("prompt_tokens", reported.get("input_tokens")))
    completion = _count_or_none(reported.get("completion_tokens", reported.get("output_tokens")))
    total = _count_or_none(reported.get("total_tokens"))
    if total is None and prompt is not None and completion is not None:
        total = prompt + completion
    counts = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}
    return {key: count for key, count in counts.items() if count is not None} or None


def model_name(
    response: LLMResult | None, invocation_params: Mapping[str, Any], metadata: Mapping[str, Any]
) -> str | None:
    """The model that answered: as the response reports it, else as requested, else LangChain's
    ``ls_model_name`` metadata."""
    candidates: list[Any] = []
    if response is not None:
        llm_output = response.llm_output or {}
        candidates += [llm_output.get("model_name"), llm_output.get("model")]
        for per_input in response.generations:
            for generation in per_input:
                if isinstance(generation, ChatGeneration):
                    reported = generation.message.response_metadata
                    candidates += [reported.get("model_name"), reported.get("model")]
    candidates += [invocation_params.get(key) for key in ("model_name", "model", "model_id")]
    candidates.append(metadata.get("ls_model_name"))
    return next((c for c in candidates if isinstance(c, str) and c), None)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _count_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


# -- JSON sanitising ----------------------------------------------------------------------------------


def json_object(value: Mapping[str, Any] | None) -> dict[str, JsonValue]:
    """A mapping as a JSON object: keys as strings, values made JSON-safe by :func:`to_json`."""
    if not value:
        return {}
    return {str(k): to_json(v) for k, v in value.items()}


def to_json(value: Any, depth: int = 0) -> JsonValue:
    """Any value as JSON: containers kept, non-finite floats as null, other objects as short text."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if depth >= _MAX_JSON_DEPTH:
        return _short_text(value)
    if isinstance(value, Mapping):
        return {str(k): to_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(v, depth + 1) for v in value]
    if isinstance(value, BaseModel):
        return to_json(value.model_dump(mode="json"), depth + 1)
    if isinstance(value, Enum):
        return to_json(value.value, depth + 1)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return _short_text(value)


def redact_json(value: JsonValue, redact: Redact) -> Any:
    """``value`` with every string in it redacted, object keys included."""
    if redact is _identity:
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(k): redact_json(v, redact) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_json(v, redact) for v in value]
    return value


def _short_text(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _MAX_REPR_CHARS else text[: _MAX_REPR_CHARS - 3] + "..."

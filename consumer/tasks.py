"""Turn one interaction event into Label Studio tasks, in the old LangChain handler's shape.

One task per input (prompt or conversation) of the run::

    {"data": {<layout.data_key>: <prompt text or dialogue>, "run_id": "<uuid>", "prompt_index": 0},
     "predictions": [{"model_version": "labelstudio-ingest",
                      "result": [{"from_name": "response", "to_name": "prompt", "type": "textarea",
                                  "value": {"text": ["<generation 1>", ...]}}]}],
     "meta": {"event_id": ..., "tags": [...], "metadata": {...}, "token_usage": {...}, ...}}

``predictions`` is empty when the input has no generations (a failed run); ``meta.error`` then
says why. ``model_version`` is the same for every run (the model's name is ``meta.model_name``) so
Label Studio pre-fills every task's response box; see docs/REVIEWING.md. See docs/ROUTING.md for
every field.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from labelstudio_ingest.consumer.labelconfig import TaskLayout
from labelstudio_ingest.consumer.tracelinks import trace_columns
from labelstudio_ingest.schemas import ChatEvent, Generation, Message, PromptEvent, ToolCall

META_MAX_BYTES = 16 * 1024
"""Default of ``INGEST_META_MAX_BYTES``: most bytes of a run's ``metadata`` and ``error`` copied
into each task after its first."""
HEAVY_META = ("metadata", "error")
"""The parts of ``meta`` whose size the producer decides (up to the event limit)."""
PROMPT_ROLE = "user"
"""The speaker of a plain prompt shown in a dialogue project."""


def build_tasks(
    event: PromptEvent | ChatEvent,
    layout: TaskLayout,
    *,
    trace_url_template: str | None = None,
    meta_max_bytes: int = META_MAX_BYTES,
) -> list[dict[str, Any]]:
    """The tasks of one run: one per prompt or conversation, in input order. Pure and fast.

    A run with a ``trace`` gets its ids as ``data`` columns and ``meta.trace``, with a link from
    ``trace_url_template`` (see ``tracelinks.py``).

    The tasks of one run share the nested values of ``meta`` (tags, metadata) with each other
    and with the event: treat them as read-only. The first task carries ``meta`` in full; the
    others carry ``metadata`` and ``error`` only within ``meta_max_bytes`` (see :func:`_meta`).
    """
    inputs: list[Any]
    if event.kind == "prompt":
        inputs = [_prompt_value(prompt, layout) for prompt in event.prompts]
    else:
        inputs = [_dialogue_value(conversation, layout) for conversation in event.messages]
    run_id = str(event.run_id)
    meta = _meta(event)
    trace_data, meta["trace"] = trace_columns(event, trace_url_template)
    later = _later_meta(meta, meta_max_bytes) if len(inputs) > 1 else meta
    generations = event.generations
    tasks: list[dict[str, Any]] = []
    for index, value in enumerate(inputs):
        predictions = _predictions(generations[index], layout) if generations else []
        tasks.append(
            {
                "data": {**trace_data, layout.data_key: value, "run_id": run_id, "prompt_index": index},
                "predictions": predictions,
                "meta": dict(meta if index == 0 else later),
            }
        )
    return tasks


def render_dialogue(conversation: Sequence[Message]) -> str:
    """A conversation as readable text, one ``role: content`` line per message, tool calls shown.

    >>> from labelstudio_ingest.schemas import Message
    >>> conversation = [Message(role="system", content="Be brief."), Message(role="user", content="Hi")]
    >>> print(render_dialogue(conversation))
    system: Be brief.
    user: Hi
    """
    lines: list[str] = []
    for message in conversation:
        speaker = message.role.value
        if message.name:
            speaker += f" ({message.name})"
        if message.tool_call_id:
            speaker += f" [{message.tool_call_id}]"
        if message.content or not message.tool_calls:
            lines.append(f"{speaker}: {message.content}")
        lines.extend(f"{speaker} {_tool_call(call)}" for call in message.tool_calls)
    return "\n".join(lines)


def _prompt_value(prompt: str, layout: TaskLayout) -> Any:
    if layout.dialogue:
        return [{layout.name_key: PROMPT_ROLE, layout.text_key: prompt}]
    return prompt


def _dialogue_value(conversation: list[Message], layout: TaskLayout) -> Any:
    if not layout.dialogue:
        return render_dialogue(conversation)
    return [_dialogue_message(message, layout) for message in conversation]


def _dialogue_message(message: Message, layout: TaskLayout) -> dict[str, Any]:
    item: dict[str, Any] = {layout.name_key: message.role.value, layout.text_key: message.content}
    if message.name is not None:
        item["name"] = message.name
    if message.tool_calls:
        item["tool_calls"] = [call.model_dump(exclude_none=True) for call in message.tool_calls]
    if message.tool_call_id is not None:
        item["tool_call_id"] = message.tool_call_id
    return item


PREDICTION_MODEL_VERSION = "labelstudio-ingest"
"""The ``model_version`` of every prediction the consumer writes, whatever the model.

Never null: one null ``model_version`` in a project breaks Label Studio's data manager (the
"model version" filter list fails to load) and so the labeling screen of every task in it. One
value for all models: Label Studio's label stream only shows (and pre-fills from) predictions
whose ``model_version`` is the project's selected one, so a per-model value would pre-fill the
tasks of one model only. Projects the consumer creates select this value.
"""


def _predictions(generations: list[Generation], layout: TaskLayout) -> list[Any]:
    """The run's answers to one input as one prediction (all n generations), or none if it has none."""
    if not generations:
        return []
    return [
        {
            "model_version": PREDICTION_MODEL_VERSION,
            "result": [
                {
                    "from_name": layout.textarea_name,
                    "to_name": layout.object_name,
                    "type": "textarea",
                    "value": {"text": [_generation_text(g) for g in generations]},
                }
            ],
        }
    ]


def _generation_text(generation: Generation) -> str:
    message = generation.message
    if message is None or not message.tool_calls:
        return generation.text
    calls = [_tool_call(call) for call in message.tool_calls]
    return "\n".join([generation.text, *calls] if generation.text else calls)


def _tool_call(call: ToolCall) -> str:
    marker = f"[tool call {call.id}]" if call.id else "[tool call]"
    return f"{marker}: {call.name}({json.dumps(call.args, ensure_ascii=False)})"


def _meta(event: PromptEvent | ChatEvent) -> dict[str, Any]:
    usage = event.token_usage
    error = event.error
    return {
        "event_id": str(event.event_id),
        "kind": event.kind,
        "parent_run_id": str(event.parent_run_id) if event.parent_run_id is not None else None,
        "model_name": event.model_name,
        "tags": list(event.tags),
        "metadata": dict(event.metadata),
        "token_usage": None
        if usage is None
        else {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        },
        "latency_ms": event.latency_ms,
        "service": event.source.service,
        "host": event.source.host,
        "event_time": event.event_time.isoformat(),
        "started_at": _iso(event.started_at),
        "ended_at": _iso(event.ended_at),
        "error": None if error is None else {"type": error.type, "message": error.message},
    }


def _later_meta(meta: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """``meta`` for the tasks after a run's first: the same, unless its ``metadata`` and ``error``
    together exceed ``max_bytes`` of JSON. Then those are emptied and ``metadata_truncated`` says
    how large they were and where they are in full, never silently: a run of 256 prompts would
    otherwise carry its (up to ~1 MB of) metadata 256 times in one import request."""
    heavy = {key: meta[key] for key in HEAVY_META if meta[key]}
    if not heavy:
        return meta
    size = len(json.dumps(heavy, ensure_ascii=False, separators=(",", ":")).encode())
    if size <= max_bytes:
        return meta
    return {
        **meta,
        "metadata": {},
        "error": None if meta["error"] is None else {"type": meta["error"]["type"], "message": ""},
        "metadata_truncated": f"{size} bytes of metadata and error left out: in full on prompt_index 0",
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()

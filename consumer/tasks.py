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
every field. A trajectory (a whole agent run) is one task instead: the run as a readable dialogue,
its final answer as the prediction, and ``meta.chat`` holding the run in the tool-calling chat
layout for exports (docs/TRAJECTORIES.md).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from labelstudio_ingest.consumer.labelconfig import TaskLayout
from labelstudio_ingest.consumer.tracelinks import trace_columns
from labelstudio_ingest.schemas import (
    ChatEvent,
    Generation,
    Message,
    PromptEvent,
    StepKind,
    ToolCall,
    TrajectoryEvent,
    TrajectoryStep,
)

META_MAX_BYTES = 16 * 1024
"""Default of ``INGEST_META_MAX_BYTES``: most bytes of a run's ``metadata`` and ``error`` copied
into each task after its first."""
HEAVY_META = ("metadata", "error")
"""The parts of ``meta`` whose size the producer decides (up to the event limit)."""
PROMPT_ROLE = "user"
"""The speaker of a plain prompt shown in a dialogue project."""


def build_tasks(
    event: PromptEvent | ChatEvent | TrajectoryEvent,
    layout: TaskLayout,
    *,
    trace_url_template: str | None = None,
    meta_max_bytes: int = META_MAX_BYTES,
) -> list[dict[str, Any]]:
    """The tasks of one run: one per prompt or conversation, in input order. Pure and fast.
    A trajectory (a whole agent run) is one task: see :func:`build_trajectory_task`.

    A run with a ``trace`` gets its ids as ``data`` columns and ``meta.trace``, with a link from
    ``trace_url_template`` (see ``tracelinks.py``).

    The tasks of one run share the nested values of ``meta`` (tags, metadata) with each other
    and with the event: treat them as read-only. The first task carries ``meta`` in full; the
    others carry ``metadata`` and ``error`` only within ``meta_max_bytes`` (see :func:`_meta`).
    """
    if event.kind == "trajectory":
        return [build_trajectory_task(event, layout, trace_url_template=trace_url_template)]
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


TRAJECTORY_MODEL_VERSION = "agent"
"""The prediction's ``model_version`` of a trajectory whose LLM steps name no model."""


def build_trajectory_task(
    event: TrajectoryEvent, layout: TaskLayout, *, trace_url_template: str | None = None
) -> dict[str, Any]:
    """The one task of an agent run: ``data.run_id`` is the trace's root run (exactly once per trace),
    the object shows :func:`trajectory_items` (a dialogue, or its text for a text object), and the
    prediction puts the final answer in the TextArea. ``meta`` adds the step count and what was cut.
    """
    items = trajectory_items(event)
    value: Any = (
        [{layout.name_key: speaker, layout.text_key: text} for speaker, text in items]
        if layout.dialogue
        else "\n".join(f"{speaker}: {text}" for speaker, text in items)
    )
    meta = _meta(event)
    trace_data, meta["trace"] = trace_columns(event, trace_url_template)
    meta["steps"] = len(event.steps)
    meta["truncated"] = None if event.truncated is None else event.truncated.model_dump()
    meta["chat"] = trajectory_chat(event)
    predictions: list[Any] = []
    if event.output is not None:
        predictions.append(
            {
                "model_version": event.model_name or TRAJECTORY_MODEL_VERSION,
                "result": [
                    {
                        "from_name": layout.textarea_name,
                        "to_name": layout.object_name,
                        "type": "textarea",
                        "value": {"text": [event.output]},
                    }
                ],
            }
        )
    data = {**trace_data, layout.data_key: value, "run_id": str(event.run_id), "prompt_index": 0}
    return {"data": data, "predictions": predictions, "meta": meta}


def trajectory_chat(event: TrajectoryEvent) -> list[dict[str, Any]]:
    """The run as a chat in the standard tool-calling layout, for training exports.

    The input messages; each LLM step's new messages and its answer as an ``assistant`` message with
    ``tool_calls: [{id, type: "function", function: {name, arguments}}]`` (``arguments`` is JSON text);
    each tool step as a ``tool`` message with its ``tool_call_id``; the final answer as the last
    ``assistant`` message (absent when the run failed). A tool step no LLM step asked for gets the
    assistant call it answers (with the id ``call_<n>`` when it has none), so every ``tool`` message
    follows its call.
    """
    chat = [_chat_message(m) for m in event.input]
    shown_results = {s.tool_call_id for s in event.steps if s.type == StepKind.TOOL and s.tool_call_id}
    asked: set[str] = set()
    last_llm = next((s for s in reversed(event.steps) if s.type == StepKind.LLM), None)
    for step in event.steps:
        if step.type == StepKind.TOOL:
            call_id = step.tool_call_id or f"call_{step.index}"
            if call_id not in asked:
                call = ToolCall(name=step.name or "tool", args=_args_object(step.arguments), id=call_id)
                chat.append({"role": "assistant", "content": "", "tool_calls": [_openai_call(call)]})
                asked.add(call_id)
            content = step.result if step.error is None else f"error: {step.error.type}: {step.error.message}"
            chat.append({"role": "tool", "tool_call_id": call_id, "content": content or ""})
            continue
        chat.extend(
            _chat_message(m)
            for m in step.messages
            if not (m.tool_call_id is not None and m.tool_call_id in shown_results)
        )
        final = step is last_llm and event.output is not None
        if step.output is not None and (step.output.tool_calls or not final):
            chat.append(_chat_message(step.output))
            asked.update(c.id for c in step.output.tool_calls if c.id)
    if event.output is not None:
        chat.append({"role": "assistant", "content": event.output})
    return chat


def _chat_message(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role.value, "content": message.content}
    if message.name is not None and message.role.value != "tool":
        out["name"] = message.name
    if message.tool_calls:
        out["tool_calls"] = [_openai_call(call) for call in message.tool_calls]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    return out


def _openai_call(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": json.dumps(call.args, ensure_ascii=False)},
    }


def _args_object(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    return {} if arguments is None else {"input": arguments}


def trajectory_items(event: TrajectoryEvent) -> list[tuple[str, str]]:
    """An agent run as ``(speaker, text)`` lines a reviewer reads top to bottom.

    The input messages by role; then per step, prefixed with its number ``[n]``: an LLM step's new
    messages (tool results already shown by a tool step are not repeated), its answer as
    ``[n] assistant`` and each tool call it asked for as ``[n] assistant → tool call``; a tool step
    as ``[n] tool · <name>`` with its arguments and result (or error). A gap in the numbers is
    marked where steps were dropped, and the final answer comes last as ``final answer``.
    """
    items = [(_speaker(m), m.content) for m in event.input]
    shown_results = {s.tool_call_id for s in event.steps if s.type == StepKind.TOOL and s.tool_call_id}
    truncated = event.truncated
    for step in event.steps:
        if truncated is not None and truncated.steps_dropped and step.index == _first_after_gap(event):
            items.append(("…", f"{truncated.steps_dropped} steps left out to keep the run within its limits"))
        items.extend(_step_items(step, shown_results))
    if event.output is not None:
        items.append(("final answer", event.output))
    if event.error is not None:
        items.append(("error", f"{event.error.type}: {event.error.message}"))
    return items


def _first_after_gap(event: TrajectoryEvent) -> int | None:
    previous = -1
    for step in event.steps:
        if step.index != previous + 1:
            return step.index
        previous = step.index
    return None


def _step_items(step: TrajectoryStep, shown_results: set[str]) -> list[tuple[str, str]]:
    number = f"[{step.index}]"
    if step.type == StepKind.TOOL:
        args = (
            step.arguments
            if isinstance(step.arguments, str)
            else json.dumps(step.arguments, ensure_ascii=False)
        )
        outcome = (
            f"error: {step.error.type}: {step.error.message}"
            if step.error is not None
            else f"result: {step.result}"
        )
        return [(f"{number} tool · {step.name or 'tool'}", f"arguments: {args}\n{outcome}")]
    items = [
        (f"{number} {_speaker(m)}", m.content)
        for m in step.messages
        if not (m.tool_call_id is not None and m.tool_call_id in shown_results)
    ]
    output = step.output
    if output is not None:
        if output.content or not output.tool_calls:
            items.append((f"{number} assistant", output.content))
        items.extend((f"{number} assistant → tool call", _tool_call(call)) for call in output.tool_calls)
    if step.error is not None:
        items.append((f"{number} error", f"{step.error.type}: {step.error.message}"))
    return items


def _speaker(message: Message) -> str:
    speaker = message.role.value
    if message.name:
        speaker += f" ({message.name})"
    if message.tool_call_id:
        speaker += f" [{message.tool_call_id}]"
    return speaker


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


def _meta(event: PromptEvent | ChatEvent | TrajectoryEvent) -> dict[str, Any]:
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

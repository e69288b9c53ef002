"""Hypothesis strategies that generate valid events of the contract."""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import strategies as st

from labelstudio_ingest.schemas import (
    SCHEMA_VERSION,
    ChatEvent,
    Generation,
    Message,
    PromptEvent,
    Role,
    RunError,
    Source,
    Target,
    TokenUsage,
    ToolCall,
    TraceLink,
)

characters = st.characters(exclude_characters="\x00", exclude_categories=("Cs",))
"""Any character the contract allows in a string: all but U+0000 (and lone surrogates, not text)."""
texts = st.text(characters, max_size=40)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=8,
)
json_objects = st.dictionaries(texts, json_values, max_size=3)
aware_datetimes = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc)
)

tool_calls = st.builds(ToolCall, name=texts, args=json_objects, id=st.none() | texts)
messages = st.builds(
    Message,
    role=st.sampled_from(Role),
    content=texts,
    name=st.none() | texts,
    tool_calls=st.lists(tool_calls, max_size=2),
    tool_call_id=st.none() | texts,
)
generations = st.builds(
    Generation, text=texts, message=st.none() | messages, generation_info=st.none() | json_objects
)
targets = st.one_of(
    st.builds(Target, project_id=st.integers(1, 10**9), mode=st.sampled_from(["prompt", "chat"])),
    st.builds(
        Target,
        project_name=st.text(characters, min_size=1, max_size=50),
        project_config=st.none() | texts,
        mode=st.sampled_from(["prompt", "chat"]),
    ),
)


@st.composite
def _common(draw: st.DrawFn, inputs: int) -> dict[str, object]:
    failed = draw(st.booleans())
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": draw(st.uuids()),
        "run_id": draw(st.uuids()),
        "parent_run_id": draw(st.none() | st.uuids()),
        "trace": draw(
            st.none()
            | st.builds(
                TraceLink,
                root_run_id=st.none() | st.uuids(),
                langsmith_trace_id=st.none() | st.uuids(),
                otel_trace_id=st.none() | st.from_regex(r"\A[0-9a-f]{32}\Z"),
            )
        ),
        "event_time": draw(aware_datetimes),
        "generations": []
        if failed
        else draw(st.lists(st.lists(generations, min_size=1, max_size=3), min_size=inputs, max_size=inputs)),
        "error": draw(st.builds(RunError, type=texts, message=texts)) if failed else None,
        "model_name": draw(st.none() | texts),
        "invocation_params": draw(json_objects),
        "token_usage": draw(
            st.none()
            | st.builds(
                TokenUsage,
                prompt_tokens=st.none() | st.integers(0, 10**7),
                completion_tokens=st.none() | st.integers(0, 10**7),
                total_tokens=st.none() | st.integers(0, 10**7),
            )
        ),
        "started_at": draw(st.none() | aware_datetimes),
        "ended_at": draw(st.none() | aware_datetimes),
        "latency_ms": draw(st.none() | st.floats(min_value=0, max_value=1e7)),
        "tags": draw(st.lists(texts, max_size=3)),
        "metadata": draw(json_objects),
        "source": draw(st.builds(Source, service=st.none() | texts, host=st.none() | texts)),
        "target": draw(targets),
    }


@st.composite
def prompt_events(draw: st.DrawFn) -> PromptEvent:
    prompts = draw(st.lists(texts, min_size=1, max_size=3))
    return PromptEvent(kind="prompt", prompts=prompts, **draw(_common(len(prompts))))


@st.composite
def chat_events(draw: st.DrawFn) -> ChatEvent:
    conversations = draw(st.lists(st.lists(messages, min_size=1, max_size=3), min_size=1, max_size=2))
    return ChatEvent(kind="chat", messages=conversations, **draw(_common(len(conversations))))


events = prompt_events() | chat_events()

"""LangChain objects → contract events, without a broker."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from enum import Enum
from typing import Any
from uuid import uuid4

import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, Generation, LLMResult
from pydantic import BaseModel, SecretStr

from labelstudio_ingest.producer.builder import (
    EventContext,
    SampledOut,
    WireEvent,
    build_event,
    model_name,
    role_of,
    start_chat_run,
    start_prompt_run,
    to_json,
    token_usage,
)
from labelstudio_ingest.schemas import (
    ChatEvent,
    PromptEvent,
    Role,
    Source,
    Target,
    decode,
    encode,
    encode_plain,
)
from labelstudio_ingest.schemas.events import INTERACTION_EVENT_ADAPTER

TARGET = Target(project_name="p").model_dump(mode="json", exclude_none=True)
CONTEXT = EventContext(
    target_for=lambda _: TARGET,
    source=Source(service="svc", host="h").model_dump(mode="json", exclude_none=True),
)


def _prompt_start(prompts: list[str], **kwargs: Any) -> Any:
    return start_prompt_run(
        prompts,
        parent_run_id=kwargs.get("parent_run_id"),
        tags=kwargs.get("tags"),
        metadata=kwargs.get("metadata"),
        invocation_params=kwargs.get("invocation_params"),
    )


def _chat_start(conversations: list[list[BaseMessage]], **kwargs: Any) -> Any:
    return start_chat_run(
        conversations,
        parent_run_id=None,
        tags=kwargs.get("tags"),
        metadata=kwargs.get("metadata"),
        invocation_params=kwargs.get("invocation_params"),
        trace=kwargs.get("trace"),
    )


def _roundtrip(event: WireEvent) -> PromptEvent | ChatEvent:
    """The event as the consumer reads it, after holding the builder's plain data to the contract:
    it validates, and it encodes to the very bytes of the validated model."""
    data = encode_plain(event)
    assert data == encode(INTERACTION_EVENT_ADAPTER.validate_python(event))
    return decode(data)


@pytest.mark.parametrize(
    ("message", "role"),
    [
        (SystemMessage("s"), Role.SYSTEM),
        (HumanMessage("h"), Role.USER),
        (AIMessage("a"), Role.ASSISTANT),
        (AIMessageChunk(content="a"), Role.ASSISTANT),
        (ToolMessage("t", tool_call_id="c"), Role.TOOL),
        (FunctionMessage(name="f", content="r"), Role.TOOL),
        (ChatMessage(role="assistant", content="x"), Role.ASSISTANT),
        (ChatMessage(role="developer", content="x"), Role.SYSTEM),
        (ChatMessage(role="User", content="x"), Role.USER),
        (ChatMessage(role="something-else", content="x"), Role.USER),
    ],
)
def test_roles_use_the_fine_tuning_vocabulary(message: BaseMessage, role: Role) -> None:
    assert role_of(message) is role


def test_chat_run_keeps_roles_tool_calls_and_n_generations() -> None:
    conversation: list[BaseMessage] = [
        SystemMessage("be brief"),
        HumanMessage("weather in Paris?"),
        AIMessage("", tool_calls=[{"name": "weather", "args": {"city": "Paris"}, "id": "call-1"}]),
        ToolMessage("sunny", tool_call_id="call-1"),
    ]
    start = _chat_start([conversation], tags=["t"], metadata={"ls_model_name": "m-meta"})
    answer = AIMessage(
        "It is sunny.",
        usage_metadata={"input_tokens": 10, "output_tokens": 4, "total_tokens": 14},
        response_metadata={"model_name": "gpt-test"},
    )
    other = AIMessage("Sunny!", usage_metadata={"input_tokens": 10, "output_tokens": 2, "total_tokens": 12})
    response = LLMResult(generations=[[ChatGeneration(message=answer), ChatGeneration(message=other)]])
    run_id = uuid4()

    event = _roundtrip(build_event(start, run_id, CONTEXT, response=response))

    assert isinstance(event, ChatEvent)
    assert event.run_id == run_id
    messages = event.messages[0]
    assert [m.role for m in messages] == [Role.SYSTEM, Role.USER, Role.ASSISTANT, Role.TOOL]
    assert messages[2].tool_calls[0].name == "weather"
    assert messages[2].tool_calls[0].args == {"city": "Paris"}
    assert messages[2].tool_calls[0].id == "call-1"
    assert messages[3].tool_call_id == "call-1"
    assert [g.text for g in event.generations[0]] == ["It is sunny.", "Sunny!"]
    first = event.generations[0][0].message
    assert first is not None
    assert first.role is Role.ASSISTANT
    assert event.token_usage is not None
    assert event.token_usage.prompt_tokens == 20
    assert event.token_usage.completion_tokens == 6
    assert event.token_usage.total_tokens == 26
    assert event.model_name == "gpt-test"
    assert event.tags == ["t"]
    assert event.latency_ms is not None
    assert event.latency_ms >= 0
    assert event.started_at is not None
    assert event.ended_at is not None
    assert event.source == Source(service="svc", host="h")


def test_prompt_run_with_several_prompts_and_llm_output_usage() -> None:
    start = _prompt_start(
        ["p1", "p2"], invocation_params={"model_name": "text-model", "temperature": 0.2}, tags=["a"]
    )
    response = LLMResult(
        generations=[[Generation(text="g1a"), Generation(text="g1b")], [Generation(text="g2")]],
        llm_output={"token_usage": {"prompt_tokens": 3, "completion_tokens": 5}},
    )

    event = _roundtrip(build_event(start, uuid4(), CONTEXT, response=response))

    assert isinstance(event, PromptEvent)
    assert event.prompts == ["p1", "p2"]
    assert [[g.text for g in gens] for gens in event.generations] == [["g1a", "g1b"], ["g2"]]
    assert event.token_usage is not None
    assert event.token_usage.total_tokens == 8
    assert event.model_name == "text-model"
    assert event.invocation_params == {"model_name": "text-model", "temperature": 0.2}


def test_streamed_chunks_become_one_generation() -> None:
    start = _chat_start([[HumanMessage("hi")]])
    chunk = ChatGenerationChunk(message=AIMessageChunk(content="hel")) + ChatGenerationChunk(
        message=AIMessageChunk(content="lo")
    )
    event = _roundtrip(build_event(start, uuid4(), CONTEXT, response=LLMResult(generations=[[chunk]])))
    assert [g.text for g in event.generations[0]] == ["hello"]


def test_failed_run_carries_its_error_and_only_matching_partial_generations() -> None:
    start = _prompt_start(["p"])
    error = ValueError("provider said no")

    bare = _roundtrip(build_event(start, uuid4(), CONTEXT, error=error))
    assert bare.error is not None
    assert (bare.error.type, bare.error.message) == ("ValueError", "provider said no")
    assert bare.generations == []

    partial = LLMResult(generations=[[Generation(text="half an ans")]])
    with_partial = _roundtrip(build_event(start, uuid4(), CONTEXT, response=partial, error=error))
    assert [g.text for g in with_partial.generations[0]] == ["half an ans"]

    mismatched = LLMResult(generations=[])
    dropped = _roundtrip(build_event(start, uuid4(), CONTEXT, response=mismatched, error=error))
    assert dropped.generations == []


def test_redact_reaches_every_text() -> None:
    def redact(text: str) -> str:
        return text.replace("alice@example.com", "<email>")

    context = EventContext(target_for=CONTEXT.target_for, source=CONTEXT.source, redact=redact)
    secret = "alice@example.com"
    conversation: list[BaseMessage] = [
        HumanMessage(f"mail {secret}"),
        AIMessage("", tool_calls=[{"name": "send", "args": {"to": secret, "n": [secret, 1]}, "id": "c"}]),
        ToolMessage(f"sent to {secret}", tool_call_id="c"),
    ]
    answer = AIMessage(f"done, {secret}", tool_calls=[{"name": "log", "args": {"who": secret}, "id": "d"}])
    response = LLMResult(generations=[[ChatGeneration(message=answer)]])

    start = _chat_start(
        [conversation],
        tags=[secret],
        metadata={"owner": {"mail": secret}},
        invocation_params={"user": secret},
    )
    response.generations[0][0].generation_info = {"echo": secret}
    chat = encode(_roundtrip(build_event(start, uuid4(), context, response=response))).decode()
    failed = encode(
        _roundtrip(build_event(_prompt_start([secret]), uuid4(), context, error=RuntimeError(secret)))
    ).decode()

    assert secret not in chat
    assert secret not in failed
    assert "<email>" in chat


def test_model_name_prefers_the_response_then_the_request_then_metadata() -> None:
    response = LLMResult(generations=[[Generation(text="x")]], llm_output={"model_name": "served"})
    assert model_name(response, {"model": "asked"}, {"ls_model_name": "meta"}) == "served"
    assert model_name(None, {"model": "asked"}, {"ls_model_name": "meta"}) == "asked"
    assert model_name(None, {}, {"ls_model_name": "meta"}) == "meta"
    assert model_name(None, {"model": 3}, {}) is None


def test_token_usage_absent_or_partial() -> None:
    assert token_usage(LLMResult(generations=[[Generation(text="x")]])) is None
    usage = token_usage(
        LLMResult(generations=[[Generation(text="x")]], llm_output={"usage": {"input_tokens": 2}})
    )
    assert usage == {"prompt_tokens": 2}


class _Color(Enum):
    RED = "red"


class _Params(BaseModel):
    key: SecretStr
    n: int


def test_invocation_params_and_metadata_are_made_json_safe() -> None:
    class Opaque:
        def __str__(self) -> str:
            return "opaque"

    value = {
        "nan": math.nan,
        "inf": math.inf,
        "tuple": (1, 2),
        "set": {3},
        "enum": _Color.RED,
        "when": datetime(2024, 1, 2, tzinfo=timezone.utc),
        "model": _Params(key=SecretStr("s3cret"), n=2),
        "obj": Opaque(),
        1: "int key",
        "deep": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["bottom"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
    }
    safe = to_json(value)
    assert isinstance(safe, dict)
    assert safe["nan"] is None
    assert safe["inf"] is None
    assert safe["tuple"] == [1, 2]
    assert safe["set"] == [3]
    assert safe["enum"] == "red"
    assert safe["when"] == "2024-01-02T00:00:00+00:00"
    assert safe["model"] == {"key": "**********", "n": 2}
    assert safe["obj"] == "opaque"
    assert safe["1"] == "int key"

    start = _prompt_start(["p"], metadata=value, invocation_params=value)
    event = build_event(start, uuid4(), CONTEXT, response=LLMResult(generations=[[Generation(text="x")]]))
    assert _roundtrip(event).metadata["enum"] == "red"


def test_every_optional_part_encodes_as_the_contract_model_would() -> None:
    conversation: list[BaseMessage] = [
        SystemMessage("rules", name="policy"),
        HumanMessage("hi", name="alice"),
        AIMessage("", tool_calls=[{"name": "look", "args": {"q": [1, 2.5, None, True]}, "id": None}]),
        ToolMessage("found", tool_call_id="c", name="look"),
        FunctionMessage(name="f", content="r"),
        ChatMessage(role="developer", content="d"),
    ]
    start = start_chat_run(
        [conversation, [HumanMessage("second")]],
        parent_run_id=uuid4(),
        tags=["a", "b"],
        metadata={"none": None, "nested": {"x": [None, {"y": "z"}]}},
        invocation_params={"temperature": 0.0, "stop": None},
    )
    answer = ChatGeneration(message=AIMessage("ok", name="bot"), generation_info={"finish_reason": "stop"})
    response = LLMResult(generations=[[answer], [ChatGeneration(message=AIMessage("two"))]])

    event = _roundtrip(build_event(start, str(uuid4()), CONTEXT, response=response, error=TimeoutError()))  # type: ignore[arg-type]

    assert isinstance(event, ChatEvent)
    assert event.parent_run_id == start.parent_run_id
    assert event.error is not None
    assert event.error.type == "TimeoutError"
    assert [m.name for m in event.messages[0]] == ["policy", "alice", None, "look", "f", None]
    assert event.generations[0][0].generation_info == {"finish_reason": "stop"}
    assert event.metadata == {"none": None, "nested": {"x": [None, {"y": "z"}]}}


@pytest.mark.parametrize(
    ("start", "response", "problem"),
    [
        (_prompt_start([]), LLMResult(generations=[]), "needs at least one input"),
        (_chat_start([[]]), LLMResult(generations=[[Generation(text="x")]]), "conversation 0 .* no messages"),
        (_prompt_start(["a", "b"]), LLMResult(generations=[[Generation(text="x")]]), "generations has 1"),
        (_prompt_start(["a"]), LLMResult(generations=[]), "must carry its generations"),
    ],
)
def test_runs_the_contract_cannot_express_raise_with_the_reason(
    start: Any, response: LLMResult, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        build_event(start, uuid4(), CONTEXT, response=response)


def test_the_trace_link_encodes_as_the_contract_model_would() -> None:
    root, langsmith_id = uuid4(), uuid4()
    full = {
        "root_run_id": root,
        "langsmith_trace_id": langsmith_id,
        "otel_trace_id": "0af7651916cd43dd8448eb211c80319c",
    }
    start = start_prompt_run(
        ["p"], parent_run_id=uuid4(), tags=None, metadata=None, invocation_params=None, trace=full
    )
    response = LLMResult(generations=[[Generation(text="x")]])

    event = _roundtrip(build_event(start, uuid4(), CONTEXT, response=response))
    only_root = _roundtrip(
        build_event(
            _chat_start([[HumanMessage("hi")]], trace={"root_run_id": root}),
            uuid4(),
            CONTEXT,
            error=TimeoutError(),
        )
    )

    assert event.trace is not None
    assert (event.trace.root_run_id, event.trace.langsmith_trace_id) == (root, langsmith_id)
    assert event.trace.otel_trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert only_root.trace is not None
    assert only_root.trace.root_run_id == root
    assert only_root.trace.otel_trace_id is None
    assert _roundtrip(build_event(_prompt_start(["p"]), uuid4(), CONTEXT, response=response)).trace is None


def test_a_sampled_out_run_that_fails_is_built_from_its_arguments_with_its_start_time() -> None:
    root = uuid4()
    skipped = SampledOut("chat", [[HumanMessage("hi")]], None, ["t"], {"k": "v"}, {"model": "m"}, root)
    start = skipped.start({"root_run_id": root})

    event = _roundtrip(build_event(start, uuid4(), CONTEXT, error=RuntimeError("boom")))

    assert isinstance(event, ChatEvent)
    assert event.messages[0][0].content == "hi"
    assert (event.tags, event.metadata, event.model_name) == (["t"], {"k": "v"}, "m")
    assert event.trace is not None
    assert event.trace.root_run_id == root
    assert event.started_at is not None
    assert event.ended_at is not None
    assert event.started_at <= event.ended_at

"""``redact=`` sees every string of a run before it leaves the process, and a failing one drops the event."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any
from uuid import uuid4

import pytest
from langchain_core.language_models import FakeListLLM
from langchain_core.messages import (
    AIMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, Generation, LLMResult

from labelstudio_ingest.producer import DropReason, LabelStudioCallbackHandler
from labelstudio_ingest.producer.builder import EventContext, build_event, start_chat_run, start_prompt_run
from labelstudio_ingest.schemas import Source, Target, decode, encode_plain

MARK = "pii"
"""Every string the test's run carries contains this; the redact below removes it from each string."""

CONTEXT_PARTS: dict[str, Any] = {
    "target_for": lambda _: Target(project_name="p").model_dump(mode="json", exclude_none=True),
    "source": Source(service="svc", host="h").model_dump(mode="json", exclude_none=True),
}
OFFLINE = {"bootstrap_timeout_ms": 300, "max_block_ms": 300}


def marking_redact(seen: list[str]) -> Callable[[str], str]:
    def redact(text: str) -> str:
        seen.append(text)
        return "[" + text.replace(MARK, "___") + "]"

    return redact


def pii_strings(value: Any) -> list[str]:
    """Every key and string in a decoded event that still holds the mark."""
    if isinstance(value, str):
        return [value] if MARK in value else []
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in pii_strings(k) + pii_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in pii_strings(v)]
    return []


PiiError = type(f"{MARK}_Error", (Exception,), {})
METADATA = {f"{MARK}-key": {f"{MARK}-nested-key": [f"{MARK}-value", 3]}, "ls_model_name": f"{MARK}-model"}
PARAMS = {"model": f"{MARK}-model-asked", f"{MARK}-param": f"{MARK}-param-value"}


def chat_run() -> tuple[Any, LLMResult]:
    conversation = [
        SystemMessage(f"{MARK} system", name=f"{MARK}-system-name"),
        HumanMessage(f"{MARK} question", name=f"{MARK}-user-name"),
        AIMessage(
            f"{MARK} thinking",
            name=f"{MARK}-ai-name",
            tool_calls=[
                {
                    "name": f"{MARK}_tool",
                    "args": {f"{MARK}-arg": [f"{MARK}-v", {f"{MARK}-k": 1}]},
                    "id": f"{MARK}-1",
                }
            ],
        ),
        ToolMessage(f"{MARK} result", tool_call_id=f"{MARK}-1", name=f"{MARK}-tool-name"),
        FunctionMessage(f"{MARK} fn", name=f"{MARK}-function"),
        ChatMessage(f"{MARK} custom", role="critic"),
    ]
    answer = AIMessage(
        f"{MARK} answer",
        name=f"{MARK}-answer-name",
        tool_calls=[{"name": f"{MARK}_log", "args": {f"{MARK}-who": f"{MARK}-x"}, "id": f"{MARK}-2"}],
        response_metadata={"model_name": f"{MARK}-served-model"},
    )
    generation = ChatGeneration(message=answer, generation_info={f"{MARK}-info": f"{MARK}-reason"})
    start = start_chat_run(
        [conversation],
        parent_run_id=None,
        tags=[f"{MARK}-tag"],
        metadata=METADATA,
        invocation_params=PARAMS,
    )
    return start, LLMResult(generations=[[generation]], llm_output={"model_name": f"{MARK}-llm-model"})


def test_a_marking_redact_leaves_no_unmarked_string_of_a_chat_run() -> None:
    seen: list[str] = []
    context = EventContext(**CONTEXT_PARTS, redact=marking_redact(seen))
    start, response = chat_run()
    encoded = encode_plain(build_event(start, uuid4(), context, response=response))

    assert pii_strings(json.loads(encoded)) == []
    assert MARK.encode() not in encoded
    assert decode(encoded).messages[0][2].tool_calls[0].name == "[____tool]"  # still a valid event
    assert {f"{MARK}-1", f"{MARK}_tool", f"{MARK}-tool-name", f"{MARK}-key", f"{MARK}-llm-model"} <= set(seen)


def test_a_marking_redact_leaves_no_unmarked_string_of_a_failed_prompt_run() -> None:
    context = EventContext(**CONTEXT_PARTS, redact=marking_redact([]))
    start = start_prompt_run(
        [f"{MARK} prompt"],
        parent_run_id=None,
        tags=[f"{MARK}-t"],
        metadata=METADATA,
        invocation_params=PARAMS,
    )
    partial = LLMResult(generations=[[Generation(text=f"{MARK} half", generation_info={f"{MARK}-i": MARK})]])
    error = PiiError(f"{MARK} in the error message")
    encoded = encode_plain(build_event(start, uuid4(), context, response=partial, error=error))

    assert pii_strings(json.loads(encoded)) == []
    assert decode(encoded).error is not None


def test_without_redact_the_run_is_published_as_it_came() -> None:
    start, response = chat_run()
    encoded = encode_plain(build_event(start, uuid4(), EventContext(**CONTEXT_PARTS), response=response))
    assert f"{MARK}_tool".encode() in encoded
    assert f"{MARK}-nested-key".encode() in encoded


@pytest.mark.parametrize(
    "redact",
    [
        pytest.param(lambda text: (_ for _ in ()).throw(ValueError(f"cannot redact {text!r}")), id="raises"),
        pytest.param(lambda text: None, id="returns-none"),
    ],
)
def test_a_failing_redact_drops_the_event_without_logging_its_text(
    redact: Callable[[str], Any],
    offline_bootstrap: str,
    make_handler: Callable[..., LabelStudioCallbackHandler],
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = make_handler(bootstrap_servers=offline_bootstrap, producer_config=OFFLINE, redact=redact)
    with caplog.at_level(logging.DEBUG):
        assert (
            FakeListLLM(responses=["ok"]).invoke(f"{MARK} secret prompt", config={"callbacks": [handler]})
            == "ok"
        )

    assert handler.stats.dropped_by_reason == {DropReason.REDACT_FAILED.value: 1}
    assert handler.stats.buffered == 0
    logged = "\n".join(caplog.messages) + "\n".join(r.exc_text or "" for r in caplog.records)
    assert "redact raised" in logged
    assert MARK not in logged

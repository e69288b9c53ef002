"""Trajectories built from a trace's callbacks: the contract's bytes, every step in order, the bounds
(steps dropped from the middle, texts cut, an event shrunk to fit) said in ``truncated``, memory
bounded, sampling per trace. Drives :class:`TrajectoryTap` with what LangChain passes a handler."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from labelstudio_ingest.producer.builder import EventContext
from labelstudio_ingest.producer.metrics import DropReason
from labelstudio_ingest.producer.sampling import Sampler
from labelstudio_ingest.producer.settings import resolve_granularity
from labelstudio_ingest.producer.traces import TraceRoots
from labelstudio_ingest.producer.trajectory import CUT_MARKER
from labelstudio_ingest.producer.trajectory_handler import TrajectoryTap
from labelstudio_ingest.schemas import DEFAULT_LIMITS, Limits, TrajectoryEvent, decode, encode

TARGET = {"project_name": "agents", "mode": "trajectory"}
CALL = AIMessage(content="", tool_calls=[{"name": "get_weather", "args": {"city": "Tokyo"}, "id": "call_1"}])
ANSWER = AIMessage(
    content="It is 18°C.", usage_metadata={"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}
)


class Tap:
    """A tap whose published values and drops are kept in lists (the handler's Kafka side)."""

    def __init__(
        self, limits: Limits = DEFAULT_LIMITS, rate: float = 1.0, max_bytes: int = 1_000_000, **redact: Any
    ):
        self.values: list[bytes] = []
        self.drops: list[DropReason] = []
        self.roots = TraceRoots()
        self.tap = TrajectoryTap(
            roots=self.roots,
            sampler=Sampler.of(rate),
            limits=limits,
            context=EventContext(target_for=lambda _: TARGET, source={"service": "test"}, **redact),
            target_for=lambda _: TARGET,
            submit=lambda _, value: self.values.append(value) is None,
            drop=self.drops.append,
            max_value_bytes=max_bytes,
        )

    def events(self) -> list[TrajectoryEvent]:
        decoded = [decode(value) for value in self.values]
        assert all(isinstance(e, TrajectoryEvent) for e in decoded)
        return [e for e in decoded if isinstance(e, TrajectoryEvent)]


def _result(message: AIMessage) -> LLMResult:
    return LLMResult(generations=[[ChatGeneration(message=message)]])


def agent_run(
    t: Tap, *, tools: int = 1, result: str = "18°C", error: BaseException | None = None
) -> uuid.UUID:
    """A graph run as LangChain reports it: chain start, ``tools`` times (LLM call, tool call), the answer."""
    root = uuid.uuid4()
    question = HumanMessage("Weather in Tokyo?")
    t.roots.started(root, None)
    t.tap.run_started(root, None, inputs={"messages": [question]}, tags=["agent"], metadata={"user": "u1"})
    history: list[Any] = [question]
    for _ in range(tools):
        llm, tool = uuid.uuid4(), uuid.uuid4()
        t.tap.llm_started(llm, root, inputs=[list(history)], tags=None, metadata=None, invocation_params={})
        t.tap.llm_ended(llm, _result(CALL), None)
        t.tap.tool_started(
            tool,
            root,
            name="get_weather",
            arguments={"city": "Tokyo"},
            tool_call_id="call_1",
            tags=None,
            metadata=None,
        )
        t.tap.tool_ended(tool, ToolMessage(content=result, tool_call_id="call_1"), None)
        history += [CALL, ToolMessage(content=result, tool_call_id="call_1")]
    llm = uuid.uuid4()
    t.tap.llm_started(
        llm, root, inputs=[list(history)], tags=None, metadata=None, invocation_params={"model": "m-1"}
    )
    t.tap.llm_ended(llm, None if error else _result(ANSWER), error)
    t.roots.ended(root)
    t.tap.run_ended(root, None if error else {"messages": [*history, ANSWER]}, error)
    return root


def test_an_agent_run_is_one_event_with_every_step_in_order() -> None:
    t = Tap()
    root = agent_run(t)
    [event] = t.events()
    assert event.run_id == root
    assert event.trace is not None
    assert event.trace.root_run_id == root
    assert [m.content for m in event.input] == ["Weather in Tokyo?"]
    assert [(s.index, s.type.value) for s in event.steps] == [(0, "llm"), (1, "tool"), (2, "llm")]
    assert event.steps[0].output is not None
    assert event.steps[0].output.tool_calls[0].name == "get_weather"
    assert event.steps[1].arguments == {"city": "Tokyo"}
    assert event.steps[1].result == "18°C"
    assert event.steps[1].tool_call_id == "call_1"
    assert [m.role.value for m in event.steps[2].messages] == ["tool"]  # only what was new to that call
    assert event.output == "It is 18°C."
    assert event.model_name == "m-1"
    assert event.token_usage is not None
    assert event.token_usage.total_tokens == 7
    assert event.tags == ["agent"]
    assert event.metadata == {"user": "u1"}
    assert event.truncated is None


def test_the_plain_data_is_the_contracts_bytes_byte_for_byte() -> None:
    t = Tap(Limits(max_trajectory_steps=4, max_step_text_chars=40))
    agent_run(t, tools=4, result="x" * 100)
    [value] = t.values
    assert encode(decode(value)) == value


def test_redaction_reaches_every_text_of_the_trajectory() -> None:
    t = Tap(redact=str.upper)
    agent_run(t)
    [event] = t.events()
    assert event.input[0].content == "WEATHER IN TOKYO?"
    assert event.steps[1].arguments == {"CITY": "TOKYO"}
    assert event.output == "IT IS 18°C."
    assert event.tags == ["AGENT"]


def test_a_long_run_keeps_its_first_and_latest_steps_and_says_how_many_were_dropped() -> None:
    t = Tap(Limits(max_trajectory_steps=4))
    agent_run(t, tools=5)  # 11 steps
    [event] = t.events()
    assert [s.index for s in event.steps] == [0, 1, 9, 10]
    assert event.truncated is not None
    assert (event.truncated.steps_dropped, event.truncated.dropped_from) == (7, 2)


def test_long_texts_are_cut_to_the_limit_and_counted() -> None:
    t = Tap(Limits(max_step_text_chars=50))
    agent_run(t, result="y" * 500)
    [event] = t.events()
    result = event.steps[1].result
    assert result is not None
    assert len(result) == 50
    assert result.endswith(CUT_MARKER.format(n=500))
    assert event.truncated is not None
    assert event.truncated.texts_cut == 2
    assert event.truncated.steps_dropped == 0


def test_an_event_too_large_loses_middle_steps_until_it_fits() -> None:
    whole = Tap()
    agent_run(whole, tools=6)
    limit = len(whole.values[0]) - 150  # less than a step, more than timing digits vary
    t = Tap(max_bytes=limit)
    agent_run(t, tools=6)
    [value] = t.values
    assert len(value) <= limit
    event = decode(value)
    assert isinstance(event, TrajectoryEvent)
    assert event.truncated is not None
    assert event.truncated.steps_dropped >= 1
    assert event.steps[0].index == 0
    assert event.steps[-1].index == 12


def test_an_event_that_cannot_fit_is_dropped_as_oversized() -> None:
    t = Tap(max_bytes=200)
    agent_run(t)
    assert t.values == []
    assert t.drops == [DropReason.OVERSIZED]


def test_a_failed_run_is_published_with_its_error_and_no_output() -> None:
    t = Tap()
    agent_run(t, error=TimeoutError("model timed out"))
    [event] = t.events()
    assert event.output is None
    assert event.error is not None
    assert event.error.type == "TimeoutError"
    assert event.steps[-1].error is not None
    assert event.steps[-1].error.message == "model timed out"


def test_sampling_keeps_or_leaves_out_whole_traces() -> None:
    t = Tap(rate=0.0)
    agent_run(t)
    assert t.values == []
    assert t.drops == [DropReason.SAMPLED_OUT]
    assert len(t.tap.recorder) == 0


def test_a_lone_llm_call_is_a_trajectory_of_one_step() -> None:
    t = Tap()
    run = uuid.uuid4()
    t.tap.llm_started(run, None, inputs=["Say hi"], tags=None, metadata=None, invocation_params={})
    t.tap.llm_ended(run, _result(AIMessage(content="Hi")), None)
    [event] = t.events()
    assert event.run_id == run
    assert [m.content for m in event.input] == ["Say hi"]
    assert [s.type.value for s in event.steps] == ["llm"]
    assert event.output == "Hi"


def test_memory_stays_bounded_by_the_traces_in_flight() -> None:
    t = Tap()
    t.tap.recorder.max_traces = 10
    for _ in range(100):  # runs that never end
        t.tap.run_started(uuid.uuid4(), None, inputs="q", tags=None, metadata=None)
    assert len(t.tap.recorder) == 10
    assert t.tap.recorder.forgotten == 90


def test_steps_that_never_end_are_forgotten_with_their_trace() -> None:
    t = Tap()
    root, llm = uuid.uuid4(), uuid.uuid4()
    t.tap.run_started(root, None, inputs="q", tags=None, metadata=None)
    t.tap.llm_started(llm, root, inputs=["q"], tags=None, metadata=None, invocation_params={})
    t.tap.run_ended(root, "a", None)  # the LLM call never reported its end
    assert t.tap.recorder._steps == {}
    [event] = t.events()
    assert event.steps[0].ended_at is None


def test_parallel_tool_calls_get_distinct_step_numbers() -> None:
    t = Tap()
    root = uuid.uuid4()
    t.tap.run_started(root, None, inputs="q", tags=None, metadata=None)

    def call_tool(n: int) -> None:
        run = uuid.uuid4()
        t.tap.tool_started(
            run, root, name="lookup", arguments={"n": n}, tool_call_id=f"c{n}", tags=None, metadata=None
        )
        t.tap.tool_ended(run, f"r{n}", None)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(call_tool, range(64)))
    t.tap.run_ended(root, "done", None)
    [event] = t.events()
    assert sorted(s.index for s in event.steps) == list(range(64))


def test_granularity_comes_from_the_argument_else_the_environment_else_per_call(monkeypatch: Any) -> None:
    monkeypatch.delenv("INGEST_GRANULARITY", raising=False)
    assert resolve_granularity(None) == "call"
    monkeypatch.setenv("INGEST_GRANULARITY", " Trace ")
    assert resolve_granularity(None) == "trace"
    assert resolve_granularity("call") == "call"
    monkeypatch.setenv("INGEST_GRANULARITY", "step")
    with pytest.raises(ValueError, match="INGEST_GRANULARITY"):
        resolve_granularity(None)

"""Real agents in trace granularity, read back from a real broker: a LangGraph ReAct agent and a plain
LangChain chain each publish one trajectory per run, while the default per-call mode is unchanged."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from labelstudio_ingest.producer import LabelStudioCallbackHandler
from labelstudio_ingest.schemas import ChatEvent, TrajectoryEvent

from .support import read_events
from .trajectory_agents import ANSWER, QUESTION, TOOL_RESULT, react_agent, tool_chain

pytestmark = pytest.mark.integration


@pytest.fixture
def topic(kafka_topic: Callable[..., str]) -> str:
    return kafka_topic(1)


def _the_weather_trajectory(event: Any, root: uuid.UUID) -> TrajectoryEvent:
    assert isinstance(event, TrajectoryEvent)
    assert event.run_id == root
    assert event.target.mode == "trajectory"
    assert [m.content for m in event.input] == [QUESTION]
    assert [s.type.value for s in event.steps] == ["llm", "tool", "llm"]
    call = event.steps[0].output
    assert call is not None
    assert [(c.name, c.args, c.id) for c in call.tool_calls] == [("get_weather", {"city": "Tokyo"}, "call_1")]
    tool = event.steps[1]
    assert (tool.name, tool.arguments, tool.tool_call_id, tool.result) == (
        "get_weather",
        {"city": "Tokyo"},
        "call_1",
        TOOL_RESULT,
    )
    assert event.output == ANSWER
    assert event.model_name == "fake-agent-1"
    assert event.token_usage is not None
    assert event.token_usage.total_tokens == 54
    return event


def test_a_langgraph_agent_run_is_one_trajectory_event(
    kafka_bootstrap: str, topic: str, handlers: Callable[..., LabelStudioCallbackHandler]
) -> None:
    handler = handlers(bootstrap_servers=kafka_bootstrap, topic=topic, granularity="trace")
    root = uuid.uuid4()
    react_agent().invoke({"messages": [("user", QUESTION)]}, config={"run_id": root, "callbacks": [handler]})
    assert handler.flush(30)
    [read] = read_events(kafka_bootstrap, topic, expected=1)
    assert read.key == str(root).encode()
    _the_weather_trajectory(read.event, root)
    assert handler.pending_runs == 0
    assert len(handler._roots) == 0


def test_a_plain_langchain_chain_with_a_tool_call_is_one_trajectory_event(
    kafka_bootstrap: str, topic: str, handlers: Callable[..., LabelStudioCallbackHandler], monkeypatch: Any
) -> None:
    monkeypatch.setenv("INGEST_GRANULARITY", "trace")
    handler = handlers(bootstrap_servers=kafka_bootstrap, topic=topic)
    assert handler.granularity == "trace"
    root = uuid.uuid4()
    assert tool_chain().invoke(QUESTION, config={"run_id": root, "callbacks": [handler]}) == ANSWER
    assert handler.flush(30)
    [read] = read_events(kafka_bootstrap, topic, expected=1)
    _the_weather_trajectory(read.event, root)


def test_the_default_per_call_mode_still_publishes_each_llm_call(
    kafka_bootstrap: str, topic: str, handlers: Callable[..., LabelStudioCallbackHandler]
) -> None:
    handler = handlers(bootstrap_servers=kafka_bootstrap, topic=topic)
    assert handler.granularity == "call"
    root = uuid.uuid4()
    react_agent().invoke({"messages": [("user", QUESTION)]}, config={"run_id": root, "callbacks": [handler]})
    assert handler.flush(30)
    events = [r.event for r in read_events(kafka_bootstrap, topic, expected=2)]
    assert len(events) == 2
    assert all(isinstance(e, ChatEvent) for e in events)
    assert {e.trace.root_run_id for e in events if e.trace is not None} == {root}


def test_an_async_agent_run_is_one_trajectory_event_too(
    kafka_bootstrap: str, topic: str, handlers: Callable[..., LabelStudioCallbackHandler]
) -> None:
    handler = handlers(bootstrap_servers=kafka_bootstrap, topic=topic, granularity="trace")
    root = uuid.uuid4()
    agent = react_agent()
    asyncio.run(
        agent.ainvoke({"messages": [("user", QUESTION)]}, config={"run_id": root, "callbacks": [handler]})
    )
    assert handler.flush(30)
    [read] = read_events(kafka_bootstrap, topic, expected=1)
    _the_weather_trajectory(read.event, root)

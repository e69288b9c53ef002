"""Agents for the trajectory tests: a LangGraph ReAct agent and a plain LangChain chain, each calling
a weather tool once, driven by a fake chat model that answers with tool calls."""

from __future__ import annotations

import warnings
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langchain_core.tools import tool

QUESTION = "Weather in Tokyo?"
TOOL_RESULT = "18°C and sunny in Tokyo"
ANSWER = "It is 18°C and sunny in Tokyo."


class ToolCallingFake(GenericFakeChatModel):
    """GenericFakeChatModel that accepts ``bind_tools`` (the answers already hold the tool calls)."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self


@tool
def get_weather(city: str) -> str:
    """The weather of a city."""
    return f"18°C and sunny in {city}"


def weather_model() -> ToolCallingFake:
    """First a tool call (``get_weather`` for Tokyo), then the answer; both report token usage."""
    return ToolCallingFake(
        messages=iter(
            [
                AIMessage(
                    content="",
                    tool_calls=[{"name": "get_weather", "args": {"city": "Tokyo"}, "id": "call_1"}],
                    usage_metadata={"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
                    response_metadata={"model_name": "fake-agent-1"},
                ),
                AIMessage(
                    content=ANSWER,
                    usage_metadata={"input_tokens": 30, "output_tokens": 9, "total_tokens": 39},
                    response_metadata={"model_name": "fake-agent-1"},
                ),
            ]
        )
    )


def react_agent() -> Runnable[Any, Any]:
    """LangGraph's prebuilt ReAct agent with the weather tool."""
    from langgraph.prebuilt import create_react_agent  # noqa: PLC0415

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # moved to langchain.agents in LangGraph 1.x; still the graph we want
        return create_react_agent(weather_model(), [get_weather])


def tool_chain() -> Runnable[str, str]:
    """A plain LangChain chain: the model asks for the tool, the chain runs it, the model answers."""
    model = weather_model()

    def run(question: str, config: RunnableConfig) -> str:
        asked = model.invoke([HumanMessage(question)], config)
        result = get_weather.invoke(asked.tool_calls[0], config)
        answer = model.invoke([HumanMessage(question), asked, result], config)
        return str(answer.text)

    return RunnableLambda(run)

"""Every shape of task the consumer produces, as the LangChain runs that make them.

Each :class:`Shape` is one run published to the broker: where it goes (a project of the prompt
config, of the chat config, or of a custom config), what the reviewer must see of its input, what
the response box must hold when the task opens (the model's answers, or nothing for a failed run),
and the correction the reviewer types.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from labelstudio_ingest.schemas import SCHEMA_VERSION, ChatEvent, PromptEvent

ProjectKind = Literal["prompt", "chat", "custom", "stream"]

LONG_RESPONSE = " ".join(f"Sentence {i} of a very long answer that goes on." for i in range(1, 401))
"""About 20,000 characters on one line: the longest answers the reviewer meets."""

TOOL_CONVERSATION: list[dict[str, Any]] = [
    {"role": "system", "content": "You are a weather bot. Use the tools."},
    {"role": "user", "content": "What is the weather in Paris?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"}],
    },
    {"role": "tool", "content": "18 degrees, sunny", "name": "get_weather", "tool_call_id": "call_1"},
]


@dataclass(frozen=True)
class Shape:
    """One run, the project it lands in, and what its task must show."""

    name: str
    project: ProjectKind
    event: dict[str, Any]
    visible: tuple[str, ...]
    """Texts of the input the labeling screen must show."""
    prefilled: tuple[str, ...]
    """The response box's texts when the task opens: the run's generations (none for a failed run)."""
    correction: str
    """What the reviewer types as the better response."""
    prompt_index: int = 0


def _run(kind: str, inputs: dict[str, Any], generations: list[list[Any]], **fields: Any) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": str(uuid.uuid4()),
        "run_id": str(uuid.uuid4()),
        "event_time": datetime.now(UTC).isoformat(),
        "kind": kind,
        **inputs,
        "generations": generations,
        **fields,
    }


def _prompt(prompts: list[str], answers: list[list[str]], **fields: Any) -> dict[str, Any]:
    return _run("prompt", {"prompts": prompts}, [[{"text": a} for a in g] for g in answers], **fields)


def _chat(conversation: list[dict[str, Any]], generations: list[Any], **fields: Any) -> dict[str, Any]:
    return _run("chat", {"messages": [conversation]}, [generations], **fields)


JAPANESE_QUESTION = "日本の首都はどこですか？"  # noqa: RUF001 (a Japanese question mark)

_BATCH_CJK = _prompt(
    [JAPANESE_QUESTION, "한국의 수도는 어디입니까?"],
    [["日本の首都は東京です。"], ["한국의 수도는 서울입니다."]],
    model_name="fake-llm",
)

SHAPES: tuple[Shape, ...] = (
    Shape(
        "prompt",
        "prompt",
        _prompt(["What is the capital of France?"], [["Paris is the capital."]], model_name="fake-llm"),
        ("What is the capital of France?",),
        ("Paris is the capital.",),
        "Paris.",
    ),
    Shape(
        "prompt-unnamed-model",  # a model or wrapper that reports no name
        "prompt",
        _prompt(["Name a prime number."], [["Seven."]], invocation_params={"_type": "fake-list"}),
        ("Name a prime number.",),
        ("Seven.",),
        "7 is prime.",
    ),
    Shape(
        "chat-tools",
        "chat",
        _chat(TOOL_CONVERSATION, [{"text": "It is 18 degrees and sunny in Paris."}], model_name="fake-chat"),
        ("You are a weather bot. Use the tools.", "What is the weather in Paris?", "18 degrees, sunny"),
        ("It is 18 degrees and sunny in Paris.",),
        "Sunny, 18 °C.",
    ),
    Shape(
        "chat-tool-call-answer",  # the model answers with a tool call, no text
        "chat",
        _chat(
            TOOL_CONVERSATION[:2],
            [
                {
                    "text": "",
                    "message": {
                        "role": "assistant",
                        "content": "",
                        "tool_calls": [{"name": "get_weather", "args": {"city": "Paris"}, "id": "call_9"}],
                    },
                }
            ],
            model_name="fake-chat",
        ),
        ("What is the weather in Paris?",),
        ('[tool call call_9]: get_weather({"city": "Paris"})',),
        'get_weather({"city": "Paris", "unit": "C"})',
    ),
    Shape(
        "chat-as-text",  # a chat run in a project of the prompt config: the dialogue as text
        "prompt",
        _chat(TOOL_CONVERSATION, [{"text": "Sunny."}], model_name="fake-chat"),
        (
            "user: What is the weather in Paris?",
            'assistant [tool call call_1]: get_weather({"city": "Paris"})',
        ),
        ("Sunny.",),
        "Sunny and 18 degrees.",
    ),
    Shape(
        "custom-config",
        "custom",
        _prompt(["Summarise: the cat sat on the mat."], [["A cat sat."]], model_name="fake-llm"),
        ("Summarise: the cat sat on the mat.",),
        ("A cat sat.",),
        "The cat sat on the mat.",
    ),
    Shape(
        "failed-run",
        "prompt",
        _prompt(
            ["This call times out."],
            [],
            model_name="fake-llm",
            error={"type": "TimeoutError", "message": "the model did not answer"},
        ),
        ("This call times out.",),
        (),
        "The answer the model should have given.",
    ),
    Shape(
        "long-response",
        "prompt",
        _prompt(["Write at length."], [[LONG_RESPONSE]], model_name="fake-llm"),
        ("Write at length.",),
        (LONG_RESPONSE,),
        "A shorter answer.",
    ),
    Shape(
        "japanese",
        "prompt",
        _BATCH_CJK,
        (JAPANESE_QUESTION,),
        ("日本の首都は東京です。",),
        "東京です。",
    ),
    Shape(
        "korean",
        "prompt",
        _BATCH_CJK,
        ("한국의 수도는 어디입니까?",),
        ("한국의 수도는 서울입니다.",),
        "서울입니다.",
        prompt_index=1,
    ),
    Shape(
        "n-generations",
        "prompt",
        _prompt(["Give me a greeting."], [["Hello!", "Hi there!", "Good morning!"]], model_name="fake-llm"),
        ("Give me a greeting.",),
        ("Hello!", "Hi there!", "Good morning!"),
        "Hello there!",
    ),
    Shape(
        "empty-response",
        "prompt",
        _prompt(["Say nothing."], [[""]], model_name="fake-llm"),
        ("Say nothing.",),
        ("",),
        "Something after all.",
    ),
)

STREAM_SHAPES: tuple[Shape, ...] = (
    Shape(
        "stream-model-a",
        "stream",
        _prompt(["Stream question one?"], [["Answer of model A."]], model_name="model-a"),
        ("Stream question one?",),
        ("Answer of model A.",),
        "Corrected A.",
    ),
    Shape(
        "stream-model-b",
        "stream",
        _prompt(["Stream question two?"], [["Answer of model B."]], model_name="model-b"),
        ("Stream question two?",),
        ("Answer of model B.",),
        "Corrected B.",
    ),
    Shape(
        "stream-unnamed-model",
        "stream",
        _prompt(["Stream question three?"], [["Answer of a nameless model."]]),
        ("Stream question three?",),
        ("Answer of a nameless model.",),
        "Corrected nameless.",
    ),
)
"""Runs of three models into one project, reviewed in Label Studio's label stream."""


def event_of(shape: Shape, target: dict[str, Any]) -> PromptEvent | ChatEvent:
    """The shape's run as a contract event aimed at ``target``."""
    fields = {**shape.event, "target": target}
    return (
        PromptEvent.model_validate(fields) if fields["kind"] == "prompt" else ChatEvent.model_validate(fields)
    )

"""Building tasks: the old handler's shape, one task per input, every combination of event and project."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from labelstudio_ingest.consumer.labelconfig import TaskLayout, default_config, task_layout
from labelstudio_ingest.consumer.tasks import PREDICTION_MODEL_VERSION, build_tasks, render_dialogue
from labelstudio_ingest.schemas import SCHEMA_VERSION, ChatEvent, Message, PromptEvent, decode, encode

TEXT = task_layout(default_config("prompt"))
DIALOGUE = task_layout(default_config("chat"))
T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
RUN_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")


def _common(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "event_id": uuid.UUID("00000000-0000-4000-8000-0000000000e1"),
        "run_id": RUN_ID,
        "event_time": T0 + timedelta(seconds=2),
        "target": {"project_name": "LangChain-2025-03-01"},
    }
    fields.update(changes)
    return fields


def prompt_event(
    prompts: list[str], generations: list[list[str]] | None = None, **changes: Any
) -> PromptEvent:
    gens = [[{"text": t} for t in g] for g in (generations if generations is not None else [["ok"]])]
    return PromptEvent(kind="prompt", prompts=prompts, **_common(generations=gens, **changes))


def chat_event(
    conversations: list[list[dict[str, Any]]], generations: list[list[Any]], **changes: Any
) -> ChatEvent:
    return ChatEvent(kind="chat", messages=conversations, **_common(generations=generations, **changes))


CONVERSATION = [
    {"role": "system", "content": "You are a weather bot."},
    {"role": "user", "content": "Weather in Paris?"},
]


def test_prompt_event_in_text_project_has_the_old_shape() -> None:
    event = prompt_event(["What is 2+2?"], [["4"]], model_name="gpt-x")
    [task] = build_tasks(event, TEXT)
    assert task["data"] == {"prompt": "What is 2+2?", "run_id": str(RUN_ID), "prompt_index": 0}
    assert task["predictions"] == [
        {
            "model_version": PREDICTION_MODEL_VERSION,
            "result": [
                {
                    "from_name": "response",
                    "to_name": "prompt",
                    "type": "textarea",
                    "value": {"text": ["4"]},
                }
            ],
        }
    ]


def test_every_model_gives_the_same_model_version_and_keeps_its_name_in_meta() -> None:
    named = build_tasks(prompt_event(["p"], model_name="gpt-x"), TEXT)[0]
    other = build_tasks(prompt_event(["p"], model_name="claude-y"), TEXT)[0]
    nameless = build_tasks(prompt_event(["p"], invocation_params={"_type": "fake-list"}), TEXT)[0]
    versions = {t["predictions"][0]["model_version"] for t in (named, other, nameless)}
    assert versions == {PREDICTION_MODEL_VERSION}
    assert [t["meta"]["model_name"] for t in (named, other, nameless)] == ["gpt-x", "claude-y", None]


def _nulls(value: Any, path: str = "") -> list[str]:
    """Where ``value`` holds a null (None), as paths like ``predictions[0].model_version``."""
    if value is None:
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _nulls(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nulls(v, f"{path}[{i}]")]
    return []


NULL_FREE_SHAPES = {
    "unnamed model": prompt_event(["p"]),
    "empty text": prompt_event(["p"], [[""]]),
    "n generations": prompt_event(["p"], [["a", "b", "c"]]),
    "input without generations": prompt_event(["p0", "p1"], [[], ["g1"]]),
    "failed run": prompt_event(["p"], [], error={"type": "TimeoutError", "message": "late"}),
    "tool call answer": chat_event(
        [CONVERSATION],
        [[{"text": "", "message": {"role": "assistant", "content": "", "tool_calls": [{"name": "f"}]}}]],
    ),
}


@pytest.mark.parametrize("layout", [TEXT, DIALOGUE], ids=["text", "dialogue"])
@pytest.mark.parametrize("name", NULL_FREE_SHAPES)
def test_data_and_predictions_never_hold_a_null(name: str, layout: TaskLayout) -> None:
    # Label Studio's editor validates these against its own types; a null where it expects a
    # value (model_version was one) keeps the labeling screen from opening. meta is not read by it.
    for task in build_tasks(NULL_FREE_SHAPES[name], layout):
        assert _nulls({"data": task["data"], "predictions": task["predictions"]}) == []
        for prediction in task["predictions"]:
            [result] = prediction["result"]
            assert result["value"]["text"], "a prediction always carries at least one text"


def test_chat_event_in_paragraphs_project_gives_role_content_dialogue() -> None:
    event = chat_event([CONVERSATION], [[{"text": "Sunny."}]])
    [task] = build_tasks(event, DIALOGUE)
    assert task["data"]["prompt"] == CONVERSATION
    assert task["data"]["run_id"] == str(RUN_ID)
    result = task["predictions"][0]["result"][0]
    assert (result["from_name"], result["to_name"]) == ("response", "dialogue")
    assert result["value"] == {"text": ["Sunny."]}


def test_dialogue_follows_the_paragraphs_keys_of_the_config() -> None:
    layout = task_layout(
        '<View><Paragraphs name="d" value="$conv"/><TextArea name="answer" toName="d"/></View>'
    )
    [task] = build_tasks(chat_event([CONVERSATION], [[{"text": "x"}]]), layout)
    assert task["data"]["conv"][1] == {"author": "user", "text": "Weather in Paris?"}
    assert task["predictions"][0]["result"][0]["from_name"] == "answer"


def test_prompt_event_in_dialogue_project_becomes_a_one_message_dialogue() -> None:
    [task] = build_tasks(prompt_event(["Tell a joke"]), DIALOGUE)
    assert task["data"]["prompt"] == [{"role": "user", "content": "Tell a joke"}]


def test_chat_event_in_text_project_is_readable_text() -> None:
    [task] = build_tasks(chat_event([CONVERSATION], [[{"text": "Sunny."}]]), TEXT)
    assert task["data"]["prompt"] == "system: You are a weather bot.\nuser: Weather in Paris?"


TOOL_CONVERSATION = [
    {"role": "user", "content": "Weather in Paris?", "name": "alice"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"}],
    },
    {"role": "tool", "content": "18°C", "tool_call_id": "call_1"},
    {"role": "assistant", "content": "Let me also check Rome.", "tool_calls": [{"name": "get_weather"}]},
]


def test_tool_calls_are_shown_in_text() -> None:
    [task] = build_tasks(chat_event([TOOL_CONVERSATION], [[{"text": "It is 18°C."}]]), TEXT)
    assert task["data"]["prompt"] == (
        "user (alice): Weather in Paris?\n"
        'assistant [tool call call_1]: get_weather({"city": "Paris"})\n'
        "tool [call_1]: 18°C\n"
        "assistant: Let me also check Rome.\n"
        "assistant [tool call]: get_weather({})"
    )


def test_tool_calls_are_kept_structured_in_a_dialogue() -> None:
    [task] = build_tasks(chat_event([TOOL_CONVERSATION], [[{"text": "It is 18°C."}]]), DIALOGUE)
    dialogue = task["data"]["prompt"]
    assert dialogue[0] == {"role": "user", "content": "Weather in Paris?", "name": "alice"}
    assert dialogue[1] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"}],
    }
    assert dialogue[2] == {"role": "tool", "content": "18°C", "tool_call_id": "call_1"}


def test_a_generation_that_calls_a_tool_shows_the_call_in_the_prediction() -> None:
    generation = {
        "text": "",
        "message": {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"name": "get_weather", "args": {"city": "Rome"}, "id": "c2"}],
        },
    }
    [task] = build_tasks(chat_event([CONVERSATION], [[generation, {"text": "Plain."}]]), DIALOGUE)
    assert task["predictions"][0]["result"][0]["value"]["text"] == [
        '[tool call c2]: get_weather({"city": "Rome"})',
        "Plain.",
    ]


def test_n_generations_go_into_one_prediction() -> None:
    [task] = build_tasks(prompt_event(["p"], [["a", "b", "c"]]), TEXT)
    [prediction] = task["predictions"]
    assert prediction["result"][0]["value"]["text"] == ["a", "b", "c"]


def test_batch_of_three_prompts_gives_three_tasks_of_one_run() -> None:
    event = prompt_event(["p0", "p1", "p2"], [["g0"], ["g1a", "g1b"], ["g2"]])
    tasks = build_tasks(event, TEXT)
    assert [t["data"]["prompt"] for t in tasks] == ["p0", "p1", "p2"]
    assert [t["data"]["prompt_index"] for t in tasks] == [0, 1, 2]
    assert {t["data"]["run_id"] for t in tasks} == {str(RUN_ID)}
    assert [t["predictions"][0]["result"][0]["value"]["text"] for t in tasks] == [
        ["g0"],
        ["g1a", "g1b"],
        ["g2"],
    ]


def test_two_conversations_give_two_tasks() -> None:
    other = [{"role": "user", "content": "Second?"}]
    tasks = build_tasks(chat_event([CONVERSATION, other], [[{"text": "A"}], [{"text": "B"}]]), DIALOGUE)
    assert [t["data"]["prompt"] for t in tasks] == [CONVERSATION, other]
    assert [t["data"]["prompt_index"] for t in tasks] == [0, 1]


def test_failed_run_gives_one_task_per_input_without_prediction() -> None:
    event = prompt_event(["p0", "p1"], [], error={"type": "RateLimitError", "message": "slow down"})
    tasks = build_tasks(event, TEXT)
    assert len(tasks) == 2
    for task in tasks:
        assert task["predictions"] == []
        assert task["meta"]["error"] == {"type": "RateLimitError", "message": "slow down"}


def test_an_input_without_generations_has_no_prediction() -> None:
    tasks = build_tasks(prompt_event(["p0", "p1"], [[], ["g1"]]), TEXT)
    assert [len(t["predictions"]) for t in tasks] == [0, 1]


def test_meta_carries_tags_metadata_usage_latency_service_and_times() -> None:
    parent = uuid.uuid4()
    event = prompt_event(
        ["p"],
        model_name="gpt-x",
        parent_run_id=parent,
        tags=["prod", "checkout"],
        metadata={"user": "u1", "nested": {"a": [1, 2]}},
        token_usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        latency_ms=812.5,
        started_at=T0,
        ended_at=T0 + timedelta(milliseconds=812.5),
        source={"service": "checkout-api", "host": "pod-7"},
    )
    [task] = build_tasks(event, TEXT)
    assert task["meta"] == {
        "event_id": "00000000-0000-4000-8000-0000000000e1",
        "kind": "prompt",
        "parent_run_id": str(parent),
        "model_name": "gpt-x",
        "tags": ["prod", "checkout"],
        "metadata": {"user": "u1", "nested": {"a": [1, 2]}},
        "token_usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        "latency_ms": 812.5,
        "service": "checkout-api",
        "host": "pod-7",
        "event_time": "2025-03-01T12:00:02+00:00",
        "started_at": "2025-03-01T12:00:00+00:00",
        "ended_at": "2025-03-01T12:00:00.812500+00:00",
        "error": None,
        "trace": None,
    }


def test_meta_of_a_minimal_event_has_the_same_keys_with_nulls() -> None:
    [task] = build_tasks(prompt_event(["p"]), TEXT)
    meta = task["meta"]
    assert meta["token_usage"] is None
    assert meta["tags"] == []
    assert meta["started_at"] is None
    assert meta["service"] is None


def test_tasks_of_one_run_do_not_share_their_meta_dict() -> None:
    first, second = build_tasks(prompt_event(["a", "b"], [["1"], ["2"]]), TEXT)
    first["meta"]["extra"] = True
    assert "extra" not in second["meta"]


@pytest.mark.parametrize("layout", [TEXT, DIALOGUE])
def test_tasks_are_json_and_survive_the_wire(layout: TaskLayout) -> None:
    event = decode(encode(chat_event([TOOL_CONVERSATION], [[{"text": "é ✓"}]], tags=["t"])))
    tasks = build_tasks(event, layout)
    assert json.loads(json.dumps(tasks)) == tasks


def test_render_dialogue_keeps_multiline_content() -> None:
    text = render_dialogue([Message(role="user", content="line 1\nline 2")])
    assert text == "user: line 1\nline 2"

"""A trajectory in Label Studio and out of it: one readable task per agent run under the default
trajectory config (or a custom one), and its review exported as SFT chat with tool calls, preference
and reward records."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

from labelstudio_ingest.consumer.annotations import feedback_config
from labelstudio_ingest.consumer.configsafety import check_config_safety
from labelstudio_ingest.consumer.export import ProjectRef, export
from labelstudio_ingest.consumer.labelconfig import default_config, task_layout
from labelstudio_ingest.consumer.tasks import TRAJECTORY_MODEL_VERSION, build_tasks
from labelstudio_ingest.schemas import TrajectoryEvent
from tests.consumer.test_annotations import annotation, choice, rating, textarea
from tests.label_configs import CUSTOM_CONFIG
from tests.schemas.test_trajectory_contract import trajectory

CONFIG = default_config("trajectory")
LAYOUT = task_layout(CONFIG)
FEEDBACK = feedback_config(CONFIG)
PROJECT = ProjectRef(3, "agents")
ROOT = uuid.UUID("00000000-0000-4000-8000-0000000000aa")


def event(**changes: Any) -> TrajectoryEvent:
    return TrajectoryEvent.model_validate(trajectory(run_id=str(ROOT), **changes))


def task(**changes: Any) -> dict[str, Any]:
    [built] = build_tasks(event(**changes), LAYOUT)
    return {"id": 5, **json.loads(json.dumps(built))}  # as the API gives it back


def test_the_default_trajectory_config_is_safe_and_receives_runs() -> None:
    check_config_safety(CONFIG)  # inside the allowlist applied to configs from events
    assert (LAYOUT.data_key, LAYOUT.object_tag, LAYOUT.textarea_name, LAYOUT.dialogue) == (
        "trajectory",
        "Paragraphs",
        "response",
        True,
    )
    assert FEEDBACK.choices == ("answer_correct", "tool_choice")
    assert FEEDBACK.numbers == ("first_wrong_step",)
    assert dict(FEEDBACK.ratings) == {"rating": 5}


def test_an_agent_run_is_one_task_keyed_by_its_root_run_with_the_answer_predicted() -> None:
    tasks = build_tasks(event(), LAYOUT)
    assert len(tasks) == 1
    [built] = tasks
    assert built["data"]["run_id"] == str(ROOT)
    assert built["predictions"] == [
        {
            "model_version": TRAJECTORY_MODEL_VERSION,
            "result": [
                {
                    "from_name": "response",
                    "to_name": "trajectory",
                    "type": "textarea",
                    "value": {"text": ["It is 18°C."]},
                }
            ],
        }
    ]
    assert built["meta"]["kind"] == "trajectory"
    assert built["meta"]["steps"] == 3


def test_the_run_reads_top_to_bottom_with_tool_calls_and_results_apart_from_messages() -> None:
    [built] = build_tasks(event(), LAYOUT)
    assert built["data"]["trajectory"] == [
        {"role": "user", "content": "Weather in Tokyo?"},
        {
            "role": "[0] assistant → tool call",
            "content": '[tool call call_1]: get_weather({"city": "Tokyo"})',
        },
        {"role": "[1] tool · get_weather", "content": 'arguments: {"city": "Tokyo"}\nresult: 18°C'},
        {"role": "[2] assistant", "content": "It is 18°C."},
        {"role": "final answer", "content": "It is 18°C."},
    ]


def test_dropped_steps_and_errors_are_shown_not_hidden() -> None:
    steps = trajectory()["steps"]
    steps[2]["index"] = 7
    failed = {
        "index": 8,
        "type": "tool",
        "name": "get_weather",
        "error": {"type": "Timeout", "message": "slow"},
    }
    [built] = build_tasks(
        event(steps=[*steps, failed], truncated={"steps_dropped": 5, "dropped_from": 2}, output=None), LAYOUT
    )
    speakers = [item["role"] for item in built["data"]["trajectory"]]
    assert speakers.index("…") == speakers.index("[7] assistant") - 1
    assert built["data"]["trajectory"][-1] == {
        "role": "[8] tool · get_weather",
        "content": "arguments: null\nerror: Timeout: slow",
    }
    assert built["predictions"] == []
    assert built["meta"]["truncated"]["steps_dropped"] == 5


def test_a_custom_text_config_gets_the_run_as_text() -> None:
    [built] = build_tasks(event(), task_layout(CUSTOM_CONFIG))
    text = built["data"]["prompt"]
    assert text.startswith("user: Weather in Tokyo?\n[0] assistant → tool call: [tool call call_1]")
    assert built["predictions"][0]["result"][0]["value"]["text"] == ["It is 18°C."]


def test_the_run_is_kept_as_a_chat_in_the_standard_tool_calling_layout() -> None:
    [built] = build_tasks(event(), LAYOUT)
    assert built["meta"]["chat"] == [
        {"role": "user", "content": "Weather in Tokyo?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Tokyo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18°C"},
        {"role": "assistant", "content": "It is 18°C."},
    ]


def _export(tasks: list[dict[str, Any]], fmt: Any) -> list[dict[str, Any]]:
    out = io.StringIO()
    export(tasks, out, fmt=fmt, config=FEEDBACK, project=PROJECT)
    return [json.loads(line) for line in out.getvalue().splitlines()]


REVIEW = annotation(
    [
        textarea("It is 18°C and sunny.", name="response"),
        choice("Partly correct", name="answer_correct"),
        choice("Right tools", name="tool_choice"),
        {"from_name": "first_wrong_step", "to_name": "trajectory", "type": "number", "value": {"number": 2}},
        rating(3),
    ]
)


def test_sft_export_is_the_corrected_run_with_its_tool_calls() -> None:
    [record] = _export([{**task(), "annotations": [REVIEW]}], "sft")
    messages = record["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[1]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "Tokyo"}',
    }
    assert messages[2]["tool_call_id"] == messages[1]["tool_calls"][0]["id"]
    assert messages[-1] == {"role": "assistant", "content": "It is 18°C and sunny."}


def test_reward_export_rates_the_whole_run() -> None:
    [record] = _export([{**task(), "annotations": [REVIEW]}], "reward")
    assert record["rating"] == 0.6
    assert record["response"] == "It is 18°C."
    assert record["choices"] == {"answer_correct": ["Partly correct"], "tool_choice": ["Right tools"]}
    assert record["numbers"] == {"first_wrong_step": 2.0}
    assert [m["role"] for m in record["prompt"]] == ["user", "assistant", "tool"]


def test_preference_export_prefers_the_corrected_final_answer_after_the_same_run() -> None:
    [record] = _export([{**task(), "annotations": [REVIEW]}], "preference")
    assert [m["role"] for m in record["prompt"]] == ["user", "assistant", "tool"]
    assert record["chosen"] == [{"role": "assistant", "content": "It is 18°C and sunny."}]
    assert record["rejected"] == [{"role": "assistant", "content": "It is 18°C."}]

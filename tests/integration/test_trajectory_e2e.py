"""Agent runs end to end: a LangGraph ReAct agent and a plain LangChain chain, each with a tool call,
published in trace granularity through the real broker and consumer into Label Studio as one task per
run (once, even when the run is published again), reviewed via the API and exported as SFT chat with
tool calls."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from labelstudio_ingest.consumer.labelconfig import default_config
from labelstudio_ingest.producer import LabelStudioCallbackHandler
from labelstudio_ingest.schemas import TrajectoryEvent, encode, event_headers, event_key
from tests.consumer.runner import ConsumerProcess, Rig, eventually, project_titled, tasks_of
from tests.integration.test_feedback_export import run_export
from tests.producer.trajectory_agents import ANSWER, QUESTION, react_agent, tool_chain
from tests.schemas.test_trajectory_contract import trajectory

pytestmark = pytest.mark.integration


def test_agent_runs_become_one_task_each_and_export_as_chats_with_tool_calls(
    rig: Rig, consumer: ConsumerProcess
) -> None:
    title = f"it-trajectory-{uuid.uuid4().hex[:10]}"
    handler = LabelStudioCallbackHandler(
        bootstrap_servers=rig.bootstrap,
        topic=rig.topic,
        project_name=title,
        sender="thread",
        granularity="trace",
    )
    graph_root, chain_root = uuid.uuid4(), uuid.uuid4()
    try:
        react_agent().invoke(
            {"messages": [("user", QUESTION)]}, config={"run_id": graph_root, "callbacks": [handler]}
        )
        tool_chain().invoke(QUESTION, config={"run_id": chain_root, "callbacks": [handler]})
        assert handler.flush(30)
    finally:
        handler.close(5)
    replayed = TrajectoryEvent.model_validate(
        trajectory(target={"project_name": title, "mode": "trajectory"})
    )
    for _ in range(2):  # the same run published twice
        rig.publisher.raw(
            rig.topic, encode(replayed), key=event_key(replayed), headers=event_headers(replayed)
        )

    consumer.start().wait_ready()
    project = eventually(lambda: project_titled(rig.ls_client, title), message="project")
    tasks = eventually(
        lambda: (found := tasks_of(rig.ls_client, project.id)) and len(found) >= 3 and found,
        message="3 tasks",
    )
    by_run = {task.data["run_id"]: task for task in tasks}
    assert sorted(by_run) == sorted([str(graph_root), str(chain_root), str(replayed.run_id)])
    assert len(tasks) == 3  # one per agent run, the replayed run once
    assert (
        rig.ls_client.projects.get(id=project.id).label_config.strip() == default_config("trajectory").strip()
    )
    for root in (graph_root, chain_root):
        task: Any = by_run[str(root)]
        speakers = [item["role"] for item in task.data["trajectory"]]
        assert speakers == [
            "user",
            "[0] assistant → tool call",
            "[1] tool · get_weather",
            "[2] assistant",
            "final answer",
        ]
        assert task.predictions[0].result[0]["value"]["text"] == [ANSWER]
        assert task.predictions[0].model_version == "fake-agent-1"
        rig.ls_client.annotations.create(
            id=task.id,
            result=[
                {
                    "from_name": "response",
                    "to_name": "trajectory",
                    "type": "textarea",
                    "value": {"text": ["Sunny, 18°C."]},
                },
                {
                    "from_name": "answer_correct",
                    "to_name": "trajectory",
                    "type": "choices",
                    "value": {"choices": ["Correct"]},
                },
            ],
        )

    records, _ = run_export(rig, "--project", title, "--format", "sft")
    assert len(records) == 2
    for record in records:
        roles = [m["role"] for m in record["messages"]]
        assert roles == ["user", "assistant", "tool", "assistant"]
        call = record["messages"][1]["tool_calls"][0]
        assert call["type"] == "function"
        assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Tokyo"}'}
        assert record["messages"][2]["tool_call_id"] == call["id"]
        assert record["messages"][-1] == {"role": "assistant", "content": "Sunny, 18°C."}
    assert consumer.terminate() == 0

"""An agent run reviewed as one task in Label Studio's labeling screen.

A real LangGraph ReAct agent (a fake chat model that asks for the weather tool, then answers) runs
with the producer in trace granularity; the real broker carries its trajectory event; a real
``labelstudio-ingest consume`` imports it into a project with the default trajectory config; a
reviewer opens it in headless chromium, answers the config's questions through the UI, and
``labelstudio-ingest export --format sft`` returns the corrected run as a chat with tool calls.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient
from label_studio_sdk.client import LabelStudio

from labelstudio_ingest.producer import LabelStudioCallbackHandler
from tests.browser.conftest import Imported, export_records
from tests.browser.screen import Reviewer
from tests.consumer.runner import ConsumerProcess, eventually, project_titled, tasks_of
from tests.harness import LabelStudioServer
from tests.producer.trajectory_agents import ANSWER, QUESTION, TOOL_RESULT, react_agent

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.timeout(600)]

TOOL_CALL = '[tool call call_1]: get_weather({"city": "Tokyo"})'
CORRECTED = "It is 18°C and sunny in Tokyo today."


@pytest.fixture(scope="module")
def agent_task(
    tmp_path_factory: pytest.TempPathFactory,
    kafka_bootstrap: str,
    kafka_admin: KafkaAdminClient,
    label_studio: LabelStudioServer,
) -> Imported:
    """One LangGraph agent run, published in trace granularity and imported by a real consumer."""
    suffix = uuid.uuid4().hex[:8]
    title, topic = f"browser-trajectory-{suffix}", f"test.browser.trajectory.{suffix}"
    kafka_admin.create_topics(
        {topic: {"num_partitions": 1, "replication_factor": 1, "configs": {}}}, wait_for_metadata=True
    )
    handler = LabelStudioCallbackHandler(
        bootstrap_servers=kafka_bootstrap,
        topic=topic,
        project_name=title,
        sender="thread",
        granularity="trace",
    )
    root = uuid.uuid4()
    try:
        react_agent().invoke(
            {"messages": [("user", QUESTION)]}, config={"run_id": root, "callbacks": [handler]}
        )
        assert handler.flush(30)
    finally:
        handler.close(5)
    client = LabelStudio(base_url=label_studio.url, api_key=label_studio.api_key)  # type: ignore[no-untyped-call]
    process = ConsumerProcess.configured(
        tmp_path_factory.mktemp("browser-trajectory-consumer"),
        bootstrap=kafka_bootstrap,
        label_studio=label_studio,
        topic=topic,
    ).start()
    try:
        process.wait_ready()
        project: Any = eventually(
            lambda: (p := project_titled(client, title)) and tasks_of(client, p.id) and p,
            timeout=120,
            message=f"the agent run's task in {title}",
        )
    finally:
        process.kill()
    [task] = tasks_of(client, project.id)
    assert task.data["run_id"] == str(root)
    return Imported(project.id, task.id, task)


def test_an_agent_run_reads_as_one_dialogue_and_its_review_exports_as_a_chat_with_tool_calls(
    agent_task: Imported, screen: Reviewer, label_studio: LabelStudioServer, tmp_path: Path
) -> None:
    screen.open_task(agent_task.project_id, agent_task.task_id)
    for speaker, text in (
        ("user", QUESTION),
        ("[0] assistant → tool call", TOOL_CALL),
        ("[1] tool · get_weather", f"result: {TOOL_RESULT}"),
        ("[2] assistant", ANSWER),
        ("final answer", ANSWER),
    ):
        screen.expect_turn(speaker, text)
    screen.expect_response((ANSWER,))
    screen.shot("trajectory", for_docs=True)
    assert screen.errors == []

    screen.choose("Partly correct")
    screen.choose("Right tools")
    screen.enter_number(2)
    screen.write_response(CORRECTED)
    screen.rate(4)
    screen.submit()
    assert screen.errors == []

    [record] = export_records(label_studio, agent_task.project_id, tmp_path / "sft.jsonl", fmt="sft")
    messages = record["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[0]["content"] == QUESTION
    [call] = messages[1]["tool_calls"]
    assert call["type"] == "function"
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Tokyo"}'}
    assert messages[2] == {"role": "tool", "tool_call_id": call["id"], "content": TOOL_RESULT}
    assert messages[3] == {"role": "assistant", "content": CORRECTED}
    assert record["metadata"]["run_id"] == agent_task.task.data["run_id"]

    [reward] = export_records(label_studio, agent_task.project_id, tmp_path / "reward.jsonl")
    assert reward["choices"] == {"answer_correct": ["Partly correct"], "tool_choice": ["Right tools"]}
    assert reward["numbers"] == {"first_wrong_step": 2}
    assert reward["metadata"]["ratings"]["rating"]["raw"] == 4

"""Traces end to end: an agent run's LLM calls, and a call published without LangChain, go through the
real broker and consumer into Label Studio, where one data-manager filter on ``data.trace_id`` finds
the whole agent run and each task links to its trace."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from labelstudio_ingest.producer import LabelStudioCallbackHandler, LabelStudioPublisher, PublishOutcome
from tests.consumer.runner import ConsumerProcess, Rig, eventually, project_titled, tasks_of
from tests.producer.agents import two_step_agent

pytestmark = pytest.mark.integration

TEMPLATE = "https://traces.example/trace/{trace_id}?run={run_id}"


def _filtered(ls_client: Any, project_id: int, trace_id: str) -> list[Any]:
    query = {
        "filters": {
            "conjunction": "and",
            "items": [
                {
                    "filter": "filter:tasks:data.trace_id",
                    "operator": "equal",
                    "type": "String",
                    "value": trace_id,
                }
            ],
        }
    }
    return list(ls_client.tasks.list(project=project_id, query=json.dumps(query), fields="all"))


def test_an_agent_runs_llm_calls_share_one_trace_column_and_link_in_label_studio(
    rig: Rig, consumer: ConsumerProcess
) -> None:
    title = f"it-trace-{uuid.uuid4().hex[:10]}"
    options = {
        "bootstrap_servers": rig.bootstrap,
        "topic": rig.topic,
        "project_name": title,
        "sender": "thread",
    }
    handler = LabelStudioCallbackHandler(mode="chat", **options)
    root, other_root = uuid.uuid4(), uuid.uuid4()
    try:
        for run_root in (root, other_root):
            two_step_agent().invoke("capital of France?", config={"run_id": run_root, "callbacks": [handler]})
        assert handler.flush(30)
    finally:
        handler.close(5)
    with LabelStudioPublisher(**options) as publisher:
        sdk_call = publisher.publish(
            messages=[{"role": "user", "content": "and of Italy?"}], response="Rome.", root_run_id=root
        )
        assert sdk_call is PublishOutcome.QUEUED
        assert publisher.flush(30)

    consumer.start(INGEST_TRACE_URL_TEMPLATE=TEMPLATE).wait_ready()
    project = eventually(lambda: project_titled(rig.ls_client, title), message="project")
    tasks = eventually(
        lambda: (found := tasks_of(rig.ls_client, project.id)) and len(found) == 5 and found,
        message="5 tasks",
    )

    of_root = _filtered(rig.ls_client, project.id, str(root))
    assert len(of_root) == 3  # both LLM calls of the agent run, and the SDK call published under it
    assert len(_filtered(rig.ls_client, project.id, str(other_root))) == 2
    for task in tasks:
        trace_id, run_id = task.data["trace_id"], task.data["run_id"]
        assert task.data["trace_url"] == f"https://traces.example/trace/{trace_id}?run={run_id}"
        assert task.meta["trace"]["root_run_id"] == trace_id
        assert task.meta["trace"]["url"] == task.data["trace_url"]
    assert consumer.terminate() == 0

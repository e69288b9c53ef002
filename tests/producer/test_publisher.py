"""LabelStudioPublisher: model calls made without LangChain, published as the same events through a
real broker, sampled like the callback's."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from examples import publish_without_langchain as publish_example
from labelstudio_ingest.producer import LabelStudioPublisher, PublishOutcome
from labelstudio_ingest.schemas import ChatEvent, PromptEvent, Role, Target

from .agents import active_span, root_id
from .support import read_events

pytestmark = pytest.mark.integration

OPENAI_CHAT: list[dict[str, Any]] = [
    {"role": "system", "content": "You are a weather bot."},
    {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "content": "18°C, sunny"},
]


@pytest.fixture
def publisher(kafka_bootstrap: str, kafka_topic: Callable[..., str]) -> Iterator[LabelStudioPublisher]:
    with LabelStudioPublisher(
        bootstrap_servers=kafka_bootstrap,
        topic=kafka_topic(1),
        project_name="sdk-calls",
        sender="thread",
        sample_rate=0.5,
    ) as publisher:
        yield publisher


def test_chat_and_prompt_calls_are_published_as_the_callbacks_events(
    publisher: LabelStudioPublisher, kafka_bootstrap: str
) -> None:
    root = root_id(kept=True)
    span, otel_id = active_span(0xABC)
    with span:
        chat = publisher.publish(
            messages=OPENAI_CHAT,
            response={"content": "It is 18°C and sunny.", "tool_calls": []},
            model="gpt-test",
            token_usage={"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
            metadata={"user": "u-1"},
            tags=["sdk"],
            latency_ms=120.0,
            root_run_id=root,
        )
    prompt = publisher.publish(
        prompt="2+2?",
        response=["4", "four"],
        model="text-test",
        token_usage={"input_tokens": 3, "output_tokens": 1},
        root_run_id=str(root),
        target=Target(project_id=7, mode="prompt"),
    )

    assert (chat, prompt) == (PublishOutcome.QUEUED, PublishOutcome.QUEUED)
    assert publisher.flush(30)
    chat_event, prompt_event = [read.event for read in read_events(kafka_bootstrap, publisher.topic, 2)]
    assert isinstance(chat_event, ChatEvent)
    assert [m.role for m in chat_event.messages[0]] == [Role.SYSTEM, Role.USER, Role.ASSISTANT, Role.TOOL]
    assert chat_event.messages[0][1].content == "Weather in Paris?"
    assert chat_event.messages[0][2].tool_calls[0].args == {"city": "Paris"}
    assert chat_event.messages[0][3].tool_call_id == "c1"
    assert [g.text for g in chat_event.generations[0]] == ["It is 18°C and sunny."]
    assert chat_event.model_name == "gpt-test"
    assert chat_event.token_usage is not None
    assert chat_event.token_usage.total_tokens == 17
    assert (chat_event.metadata, chat_event.tags) == ({"user": "u-1"}, ["sdk"])
    assert chat_event.latency_ms is not None
    assert chat_event.latency_ms >= 120.0
    assert chat_event.started_at is not None
    assert chat_event.ended_at is not None
    assert (chat_event.ended_at - chat_event.started_at).total_seconds() >= 0.12
    assert chat_event.trace is not None
    assert (chat_event.trace.root_run_id, chat_event.trace.otel_trace_id) == (root, otel_id)
    assert chat_event.target.project_name == "sdk-calls"
    assert isinstance(prompt_event, PromptEvent)
    assert [g.text for g in prompt_event.generations[0]] == ["4", "four"]
    assert prompt_event.token_usage is not None
    assert prompt_event.token_usage.total_tokens == 4
    assert prompt_event.latency_ms is None  # not given: not made up
    assert prompt_event.target == Target(project_id=7, mode="prompt")
    assert prompt_event.trace is not None
    assert prompt_event.trace.root_run_id == root


def test_failures_are_always_published_and_the_rest_is_sampled_or_counted(
    publisher: LabelStudioPublisher, kafka_bootstrap: str
) -> None:
    dropped_root = root_id(kept=False)
    run = uuid.uuid4()
    user = [{"role": "user", "content": "hi"}]

    outcomes = [
        publisher.publish(messages=user, error="rate limited", root_run_id=dropped_root, run_id=run),
        publisher.publish(messages=user, response="hello", root_run_id=dropped_root),
        publisher.publish(messages=user, response="hello", metadata={"labelstudio_sample": True}),
        publisher.publish(response="no input"),
        publisher.publish(
            messages=user,
            response={"role": "user", "content": "not an answer"},
            metadata={"labelstudio_sample": True},
        ),
    ]

    assert outcomes == [
        PublishOutcome.QUEUED,
        PublishOutcome.SAMPLED_OUT,
        PublishOutcome.QUEUED,
        PublishOutcome.DROPPED,
        PublishOutcome.DROPPED,
    ]
    assert publisher.flush(30)
    assert publisher.stats.dropped_by_reason == {"sampled_out": 1, "invalid": 2}
    failed, asked = [read.event for read in read_events(kafka_bootstrap, publisher.topic, 2)]
    assert failed.run_id == run
    assert failed.error is not None
    assert (failed.error.type, failed.error.message) == ("ReportedError", "rate limited")
    assert failed.generations == []
    assert asked.error is None


def test_the_example_publishes_its_calls(kafka_bootstrap: str, kafka_topic: Callable[..., str]) -> None:
    topic = kafka_topic(1)
    assert publish_example.main(["--bootstrap-servers", kafka_bootstrap, "--topic", topic]) == 0
    events = [read.event for read in read_events(kafka_bootstrap, topic, 2)]
    assert [e.model_name for e in events] == ["example-model-1", "example-model-1"]
    assert all(
        isinstance(e, ChatEvent) and e.token_usage and e.token_usage.total_tokens == 28 for e in events
    )

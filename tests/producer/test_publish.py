"""Events published through a real broker, read back and decoded with the contract's ``decode``."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from kafka import KafkaProducer
from langchain_core.language_models import BaseLanguageModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from prometheus_client import REGISTRY, generate_latest

from labelstudio_ingest.producer import LabelStudioCallbackHandler
from labelstudio_ingest.schemas import SCHEMA_VERSION, ChatEvent, PromptEvent, Role, Target

from .fakes import (
    FailingLLM,
    FakeListChatModel,
    FakeListLLM,
    FakeStreamingListLLM,
    TwoAnswersLLM,
    tool_calling_chat,
)
from .support import FAST_RECOVERY, ReadEvent, read_events

pytestmark = pytest.mark.integration

MakeHandler = Callable[..., LabelStudioCallbackHandler]
CONFIG: Any = {"tags": ["unit-7"], "metadata": {"user": "u-1", "ls_model_name": "fake-model"}}


@pytest.fixture
def topic(kafka_topic: Callable[..., str]) -> str:
    """A fresh topic with several partitions on the session broker."""
    return kafka_topic(3)


def _run(model: BaseLanguageModel[Any], entry: str, handler: LabelStudioCallbackHandler) -> int:
    """Call ``model`` through one LangChain entry point; return how many runs that made."""
    config = {**CONFIG, "callbacks": [handler]}
    if entry == "invoke":
        model.invoke("first", config=config)
        return 1
    if entry == "batch":
        model.batch(["first", "second"], config=config)
        return 2
    if entry == "stream":
        chunks = list(model.stream("first", config=config))
        assert len(chunks) > 1  # several tokens, still one event
        return 1

    async def run_async() -> int:
        if entry == "ainvoke":
            await model.ainvoke("first", config=config)
            return 1
        if entry == "abatch":
            await model.abatch(["first", "second"], config=config)
            return 2
        chunks = [chunk async for chunk in model.astream("first", config=config)]
        assert len(chunks) > 1
        return 1

    return asyncio.run(run_async())


def _published(handler: LabelStudioCallbackHandler, bootstrap: str, expected: int) -> list[ReadEvent]:
    assert handler.flush(60)
    read = read_events(bootstrap, handler.topic, expected)
    assert len(read) == expected
    return read


@pytest.mark.parametrize("entry", ["invoke", "batch", "stream", "ainvoke", "abatch", "astream"])
@pytest.mark.parametrize("mode", ["prompt", "chat"])
def test_each_entry_point_publishes_one_event_per_run(
    entry: str, mode: str, kafka_bootstrap: str, topic: str, make_handler: MakeHandler
) -> None:
    handler = make_handler(
        bootstrap_servers=kafka_bootstrap, topic=topic, mode=mode, project_name="Proj-%Y-%m-%d"
    )
    model: BaseLanguageModel[Any] = (
        FakeStreamingListLLM(responses=["alpha beta", "gamma delta"])
        if mode == "prompt"
        else FakeListChatModel(responses=["alpha beta", "gamma delta"])
    )

    runs = _run(model, entry, handler)
    read = _published(handler, kafka_bootstrap, runs)

    assert handler.pending_runs == 0
    assert handler.stats.published == runs
    inputs = set()
    for item in read:
        event = item.event
        assert item.key == str(event.run_id).encode()
        assert item.headers == {
            "content-type": b"application/json",
            "schema-version": str(SCHEMA_VERSION).encode(),
        }
        assert event.schema_version == SCHEMA_VERSION
        assert event.kind == mode
        assert event.error is None
        assert len(event.generations) == 1
        assert event.generations[0][0].text in {"alpha beta", "gamma delta"}
        assert event.tags == ["unit-7"]
        assert event.metadata["user"] == "u-1"
        assert event.model_name == "fake-model"
        assert event.latency_ms is not None
        assert event.started_at is not None
        assert event.ended_at is not None
        assert event.target == Target(project_name=datetime.now().strftime("Proj-%Y-%m-%d"), mode=mode)
        assert event.source.host == socket.gethostname()
        assert event.source.service
        if isinstance(event, PromptEvent):
            inputs.add(event.prompts[0])
        else:
            assert isinstance(event, ChatEvent)
            assert event.messages[0][0].role is Role.USER
            inputs.add(event.messages[0][0].content)
            message = event.generations[0][0].message
            assert message is not None
            assert message.role is Role.ASSISTANT
    assert inputs == ({"first", "second"} if runs == 2 else {"first"})
    assert len({item.event.run_id for item in read}) == runs


def test_n_generations_token_usage_and_model_name(
    kafka_bootstrap: str, topic: str, make_handler: MakeHandler
) -> None:
    handler = make_handler(bootstrap_servers=kafka_bootstrap, topic=topic)
    TwoAnswersLLM().invoke("tell", config={"callbacks": [handler]})
    (item,) = _published(handler, kafka_bootstrap, 1)
    event = item.event
    assert isinstance(event, PromptEvent)
    assert [g.text for g in event.generations[0]] == ["tell (1)", "tell (2)"]
    assert event.token_usage is not None
    assert (event.token_usage.prompt_tokens, event.token_usage.completion_tokens) == (7, 9)
    assert event.token_usage.total_tokens == 16
    assert event.model_name == "two-answers-v1"
    assert event.invocation_params["_type"] == "two-answers"


def test_chat_roles_and_tool_calls(kafka_bootstrap: str, topic: str, make_handler: MakeHandler) -> None:
    handler = make_handler(bootstrap_servers=kafka_bootstrap, topic=topic, mode="chat")
    history = [
        SystemMessage("You are terse."),
        HumanMessage("Weather in Rome?"),
        AIMessage("", tool_calls=[{"name": "weather", "args": {"city": "Rome"}, "id": "call-1"}]),
        ToolMessage("sunny, 24C", tool_call_id="call-1"),
        HumanMessage("And Paris?"),
    ]
    tool_calling_chat().invoke(history, config={"callbacks": [handler]})
    (item,) = _published(handler, kafka_bootstrap, 1)
    event = item.event
    assert isinstance(event, ChatEvent)
    conversation = event.messages[0]
    assert [m.role for m in conversation] == [Role.SYSTEM, Role.USER, Role.ASSISTANT, Role.TOOL, Role.USER]
    assert conversation[2].tool_calls[0].args == {"city": "Rome"}
    assert conversation[3].tool_call_id == "call-1"
    answer = event.generations[0][0].message
    assert answer is not None
    assert answer.tool_calls[0].name == "weather"
    assert answer.tool_calls[0].args == {"city": "Paris"}
    assert event.token_usage is not None
    assert event.token_usage.total_tokens == 17
    assert event.model_name == "fake-tools-1"


def test_a_failed_run_is_published_with_its_error(
    kafka_bootstrap: str, topic: str, make_handler: MakeHandler
) -> None:
    handler = make_handler(bootstrap_servers=kafka_bootstrap, topic=topic)
    with pytest.raises(RuntimeError):
        FailingLLM().invoke("doomed", config={"callbacks": [handler]})
    (item,) = _published(handler, kafka_bootstrap, 1)
    event = item.event
    assert isinstance(event, PromptEvent)
    assert event.prompts == ["doomed"]
    assert event.generations == []
    assert event.error is not None
    assert (event.error.type, event.error.message) == ("RuntimeError", "provider unavailable")
    assert handler.pending_runs == 0


def test_redact_runs_before_the_event_leaves_the_process(
    kafka_bootstrap: str, topic: str, make_handler: MakeHandler
) -> None:
    handler = make_handler(
        bootstrap_servers=kafka_bootstrap,
        topic=topic,
        mode="chat",
        redact=lambda text: text.replace("4111-1111", "<card>"),
    )
    FakeListChatModel(responses=["card 4111-1111 noted"]).invoke(
        [HumanMessage("my card is 4111-1111")], config={"callbacks": [handler]}
    )
    (item,) = _published(handler, kafka_bootstrap, 1)
    event = item.event
    assert isinstance(event, ChatEvent)
    assert event.messages[0][0].content == "my card is <card>"
    assert event.generations[0][0].text == "card <card> noted"
    assert "4111-1111" not in event.model_dump_json()


def test_a_chat_model_under_prompt_mode_is_published_as_chat(
    kafka_bootstrap: str, topic: str, make_handler: MakeHandler
) -> None:
    handler = make_handler(bootstrap_servers=kafka_bootstrap, topic=topic, mode="prompt")
    FakeListChatModel(responses=["hello"]).invoke("hi", config={"callbacks": [handler]})
    (item,) = _published(handler, kafka_bootstrap, 1)
    assert item.event.kind == "chat"
    assert item.event.target.mode == "prompt"  # the project's mode is the handler's option


def test_concurrent_threads_and_tasks_publish_every_run_once(
    kafka_bootstrap: str, topic: str, make_handler: MakeHandler
) -> None:
    handler = make_handler(bootstrap_servers=kafka_bootstrap, topic=topic, mode="chat")
    chat = FakeListChatModel(responses=["a", "b", "c"])
    llm = FakeListLLM(responses=["d", "e"])
    failing = FailingLLM()

    def work() -> None:
        for _ in range(25):
            chat.invoke("t", config={"callbacks": [handler]})
            llm.invoke("t", config={"callbacks": [handler]})
            with pytest.raises(RuntimeError):
                failing.invoke("t", config={"callbacks": [handler]})

    async def tasks() -> None:
        async def one() -> None:
            for _ in range(25):
                await chat.ainvoke("t", config={"callbacks": [handler]})
                await llm.ainvoke("t", config={"callbacks": [handler]})

        await asyncio.gather(*(one() for _ in range(4)))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    asyncio.run(tasks())
    for thread in threads:
        thread.join()

    expected = 4 * 25 * 3 + 4 * 25 * 2
    read = _published(handler, kafka_bootstrap, expected)
    assert len({item.event.run_id for item in read}) == expected
    assert sum(1 for item in read if item.event.error is not None) == 4 * 25
    assert handler.pending_runs == 0
    stats = handler.stats
    assert (stats.published, stats.buffered, stats.dropped, stats.failed) == (expected, 0, 0, 0)


def test_metrics_are_exposed_to_prometheus(
    kafka_bootstrap: str, topic: str, make_handler: MakeHandler
) -> None:
    handler = make_handler(bootstrap_servers=kafka_bootstrap, topic=topic)
    for _ in range(3):
        FakeListLLM(responses=["x"]).invoke("x", config={"callbacks": [handler]})
    assert handler.flush(60)
    exposition = generate_latest(REGISTRY).decode()
    assert f'labelstudio_ingest_producer_published_total{{topic="{topic}"}} 3.0' in exposition
    assert f'labelstudio_ingest_producer_buffered_events{{topic="{topic}"}} 0.0' in exposition
    assert (
        f'labelstudio_ingest_producer_dropped_total{{reason="buffer_full",topic="{topic}"}} 0.0' in exposition
    )
    assert f'labelstudio_ingest_producer_failed_total{{topic="{topic}"}} 0.0' in exposition


@pytest.mark.parametrize("shared", [False, True], ids=["producer_config", "shared-producer"])
def test_events_over_the_producers_request_limit_are_dropped_not_raised(
    kafka_bootstrap: str, topic: str, make_handler: MakeHandler, shared: bool
) -> None:
    """A record kafka-python would refuse (``max_request_size``) is dropped at the callback, counted."""
    limit = {"max_request_size": 20_000}
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, **FAST_RECOVERY, **limit) if shared else None
    try:
        handler = (
            make_handler(producer=producer, topic=topic)
            if producer is not None
            else make_handler(bootstrap_servers=kafka_bootstrap, topic=topic, producer_config=limit)
        )
        assert handler.max_value_bytes == 20_000 - 1_024
        llm = FakeListLLM(responses=["fine"])
        assert llm.invoke("x" * 30_000, config={"callbacks": [handler]}) == "fine"
        assert llm.invoke("y" * 15_000, config={"callbacks": [handler]}) == "fine"  # under the limit
        assert handler.flush(30)
        stats = handler.stats
        assert (stats.published, stats.failed, stats.dropped_by_reason) == (1, 0, {"oversized": 1})
        (item,) = read_events(kafka_bootstrap, topic, 1)
        assert isinstance(item.event, PromptEvent)
        assert item.event.prompts == ["y" * 15_000]
    finally:
        if producer is not None:
            producer.close(5)


def test_handlers_can_share_the_apps_producer(
    kafka_bootstrap: str, topic: str, make_handler: MakeHandler
) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, **FAST_RECOVERY)
    try:
        first = make_handler(producer=producer, topic=topic)
        second = make_handler(producer=producer, topic=topic, mode="chat")
        FakeListLLM(responses=["x"]).invoke("x", config={"callbacks": [first]})
        FakeListChatModel(responses=["y"]).invoke("y", config={"callbacks": [second]})
        assert first.close(30)
        assert second.close(30)
        read = read_events(kafka_bootstrap, topic, 2)
        assert sorted(item.event.kind for item in read) == ["chat", "prompt"]
        producer.send(topic, b"still usable").get(timeout=30)  # the handlers did not close it
    finally:
        producer.close(5)

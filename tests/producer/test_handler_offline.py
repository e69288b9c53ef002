"""The handler's options, and its promise never to hurt the app, with no broker anywhere."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from enum import Enum
from uuid import uuid4

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModelError
from langchain_core.outputs import Generation, LLMResult

from labelstudio_ingest.producer import DropReason, LabelStudioCallbackHandler
from labelstudio_ingest.producer import settings as env
from labelstudio_ingest.schemas import DEFAULT_TOPIC, Limits

from .fakes import FailingLLM, FakeListChatModel, FakeListLLM

MakeHandler = Callable[..., LabelStudioCallbackHandler]
OFFLINE = {"bootstrap_timeout_ms": 300, "max_block_ms": 300}


@pytest.mark.parametrize("option", ["api_key", "url"])
def test_label_studio_credentials_moved_to_the_consumer(option: str) -> None:
    with pytest.raises(TypeError, match=rf"no longer takes {option}=.*consumer.*LABEL_STUDIO_API_KEY"):
        LabelStudioCallbackHandler(**{option: "value"})  # type: ignore[arg-type]


def test_options_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, make_handler: MakeHandler
) -> None:
    monkeypatch.setenv("LABEL_STUDIO_PROJECT_ID", "42")
    monkeypatch.setenv("INGEST_TOPIC", "my.topic")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092, k2:9093")
    handler = make_handler()
    assert (handler.project_id, handler.topic, handler.mode) == (42, "my.topic", "prompt")
    assert env.resolve_bootstrap_servers(None) == ["k1:9092", "k2:9093"]
    assert make_handler(project_id=7, topic="other").project_id == 7


def test_defaults_without_environment(monkeypatch: pytest.MonkeyPatch, make_handler: MakeHandler) -> None:
    for name in ("LABEL_STUDIO_PROJECT_ID", "INGEST_TOPIC", "KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(name, raising=False)
    handler = make_handler()
    assert (handler.project_id, handler.topic, handler.project_name) == (
        None,
        DEFAULT_TOPIC,
        "LangChain-%Y-%m-%d",
    )
    assert env.resolve_bootstrap_servers(None) == ["localhost:9092"]


def test_project_name_is_formatted_with_each_runs_date(make_handler: MakeHandler) -> None:
    handler = make_handler(project_name="Daily-%Y-%m-%d", project_config="<View/>", mode="chat")
    target = handler._target_for(datetime(2024, 2, 29, 12, tzinfo=timezone.utc))
    assert target == {"project_name": "Daily-2024-02-29", "project_config": "<View/>", "mode": "chat"}


def test_the_old_handlers_mode_enum_is_accepted(make_handler: MakeHandler) -> None:
    class LabelStudioMode(Enum):
        PROMPT = "prompt"
        CHAT = "chat"

    assert make_handler(mode=LabelStudioMode.CHAT).mode == "chat"


@pytest.mark.parametrize(
    "options",
    [
        {"mode": "dialogue"},
        {"project_id": "abc"},
        {"project_id": 0},
        {"project_name": ""},
        {"topic": "not a topic"},
        {"producer_config": {"no_such_setting": 1}},
        {"producer_config": {"value_serializer": str.encode}},
        {"producer_config": {"bootstrap_servers": "x:1"}},
        {"project_config": "x" * 70_000},
        {"max_buffered_bytes": 10},
    ],
)
def test_invalid_options_fail_at_construction(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        LabelStudioCallbackHandler(**options)  # type: ignore[arg-type]


def test_callbacks_never_raise_and_leave_no_state_behind(
    offline_bootstrap: str, make_handler: MakeHandler
) -> None:
    handler = make_handler(bootstrap_servers=offline_bootstrap, producer_config=OFFLINE)
    good, bad = FakeListLLM(responses=["ok"]), FailingLLM()
    chat = FakeListChatModel(responses=["streamed answer"], error_on_chunk_number=3)
    config = {"callbacks": [handler]}

    for i in range(60):
        if i % 3 == 0:
            assert good.invoke("hi", config=config) == "ok"
        elif i % 3 == 1:
            with pytest.raises(RuntimeError, match="provider unavailable"):
                bad.invoke("hi", config=config)
        else:
            with pytest.raises(FakeListChatModelError):
                list(chat.stream("hi", config=config))
    abandoned = FakeListChatModel(responses=["a long answer"]).stream("hi", config=config)
    next(abandoned)
    abandoned.close()  # the app stops reading a stream half-way

    assert handler.pending_runs == 0
    assert handler.stats.buffered == 61
    assert handler.stats.dropped == 0


def test_concurrent_threads_and_tasks_share_one_handler(
    offline_bootstrap: str, make_handler: MakeHandler
) -> None:
    handler = make_handler(bootstrap_servers=offline_bootstrap, producer_config=OFFLINE)
    llm = FakeListLLM(responses=["a", "b", "c"])
    chat = FakeListChatModel(responses=["x", "y"])
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(50):
                llm.invoke("t", config={"callbacks": [handler]})
                chat.invoke("t", config={"callbacks": [handler]})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    async def tasks() -> None:
        async def one() -> None:
            for _ in range(50):
                await chat.ainvoke("t", config={"callbacks": [handler]})
                await llm.ainvoke("t", config={"callbacks": [handler]})

        await asyncio.gather(*(one() for _ in range(4)))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    asyncio.run(tasks())
    for thread in threads:
        thread.join()

    assert errors == []
    assert handler.pending_runs == 0
    assert handler.stats.buffered == 8 * 100


def test_mode_mismatch_is_published_as_what_it_is_and_said_once(
    offline_bootstrap: str, make_handler: MakeHandler, caplog: pytest.LogCaptureFixture
) -> None:
    options = {"bootstrap_servers": offline_bootstrap, "producer_config": OFFLINE}
    prompt_handler = make_handler(**options, topic="prompts")
    chat_handler = make_handler(**options, topic="chats", mode="chat")
    chat, llm = FakeListChatModel(responses=["x"]), FakeListLLM(responses=["y"])
    with caplog.at_level(logging.WARNING, logger="labelstudio_ingest.producer"):
        for _ in range(3):
            chat.invoke("hi", config={"callbacks": [prompt_handler]})
            llm.invoke("hi", config={"callbacks": [chat_handler]})
    mismatches = [r.getMessage() for r in caplog.records if "said once per handler" in r.getMessage()]
    assert len(mismatches) == 2
    assert any("A chat model" in m and "'chat' events" in m for m in mismatches)
    assert any("A text LLM" in m and "'prompt' events" in m for m in mismatches)
    assert (prompt_handler.stats.buffered, chat_handler.stats.buffered) == (3, 3)


def test_an_end_without_its_start_is_counted_not_raised(
    offline_bootstrap: str, make_handler: MakeHandler
) -> None:
    handler = make_handler(bootstrap_servers=offline_bootstrap, producer_config=OFFLINE)
    handler.on_llm_end(LLMResult(generations=[[Generation(text="x")]]), run_id=uuid4())
    handler.on_llm_error(RuntimeError("x"), run_id=uuid4())
    assert handler.stats.dropped_by_reason == {DropReason.INVALID.value: 2}


def test_a_failing_redact_hook_drops_the_event_instead_of_leaking_it(
    offline_bootstrap: str, make_handler: MakeHandler
) -> None:
    def redact(text: str) -> str:
        raise RuntimeError("redactor down")

    handler = make_handler(bootstrap_servers=offline_bootstrap, producer_config=OFFLINE, redact=redact)
    assert FakeListLLM(responses=["ok"]).invoke("secret", config={"callbacks": [handler]}) == "ok"
    assert handler.stats.buffered == 0
    assert handler.stats.dropped_by_reason == {DropReason.REDACT_FAILED.value: 1}
    assert handler.pending_runs == 0


@pytest.mark.parametrize(
    ("prompts", "reason"),
    [
        (["a", "b"], "generations has 1 lists but the run has 2 inputs"),  # one answer for two prompts
        (["\ud800"], "surrogates not allowed"),  # not text JSON can carry
    ],
)
def test_runs_the_contract_cannot_carry_are_dropped_and_said(
    offline_bootstrap: str,
    make_handler: MakeHandler,
    caplog: pytest.LogCaptureFixture,
    prompts: list[str],
    reason: str,
) -> None:
    handler = make_handler(bootstrap_servers=offline_bootstrap, producer_config=OFFLINE)
    run_id = uuid4()
    with caplog.at_level(logging.WARNING, logger="labelstudio_ingest.producer"):
        handler.on_llm_start({}, prompts, run_id=run_id)
        handler.on_llm_end(LLMResult(generations=[[Generation(text="x")]]), run_id=run_id)
    assert handler.stats.dropped_by_reason == {DropReason.INVALID.value: 1}
    assert handler.pending_runs == 0
    assert [reason in str(r.exc_info[1]) for r in caplog.records if r.exc_info] == [True]


def test_an_oversized_event_is_dropped_and_counted(offline_bootstrap: str, make_handler: MakeHandler) -> None:
    limits = Limits(max_event_bytes=5_000)
    handler = make_handler(bootstrap_servers=offline_bootstrap, producer_config=OFFLINE, limits=limits)
    llm = FakeListLLM(responses=["short"])
    llm.invoke("x" * 10_000, config={"callbacks": [handler]})
    llm.invoke("small", config={"callbacks": [handler]})
    assert handler.stats.dropped_by_reason == {DropReason.OVERSIZED.value: 1}
    assert handler.stats.buffered == 1


def test_beyond_the_buffer_bound_events_are_dropped_and_counted(
    offline_bootstrap: str, make_handler: MakeHandler
) -> None:
    handler = make_handler(
        bootstrap_servers=offline_bootstrap, producer_config=OFFLINE, max_buffered_events=5
    )
    llm = FakeListLLM(responses=["ok"])
    for _ in range(8):
        assert llm.invoke("hi", config={"callbacks": [handler]}) == "ok"
    stats = handler.stats
    assert (stats.buffered, stats.dropped_by_reason) == (5, {DropReason.BUFFER_FULL.value: 3})


def test_after_close_events_are_dropped_and_counted(
    offline_bootstrap: str, make_handler: MakeHandler
) -> None:
    handler = make_handler(bootstrap_servers=offline_bootstrap, producer_config=OFFLINE)
    llm = FakeListLLM(responses=["ok"])
    llm.invoke("before", config={"callbacks": [handler]})
    assert handler.close(timeout=0) is False
    assert llm.invoke("after", config={"callbacks": [handler]}) == "ok"
    stats = handler.stats
    assert stats.buffered == 0
    assert stats.dropped_by_reason == {DropReason.CLOSED.value: 2}


def test_counters_are_plain_numbers_without_prometheus_client(offline_bootstrap: str) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["prometheus_client"] = None  # as if it were not installed
        from langchain_core.language_models.fake import FakeListLLM
        from labelstudio_ingest.producer import LabelStudioCallbackHandler
        from labelstudio_ingest.producer.metrics import HAVE_PROMETHEUS
        handler = LabelStudioCallbackHandler(
            bootstrap_servers="{offline_bootstrap}", producer_config={OFFLINE!r}, exit_timeout=0
        )
        FakeListLLM(responses=["ok"]).invoke("hi", config={{"callbacks": [handler]}})
        print(HAVE_PROMETHEUS, handler.stats.buffered)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "1"]


def test_source_names_the_service_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "chatbot")
    monkeypatch.setenv("INGEST_SERVICE_NAME", "ignored")
    assert env.service_name() == "chatbot"
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    assert env.service_name() == "ignored"
    monkeypatch.delenv("INGEST_SERVICE_NAME")
    monkeypatch.setattr(sys, "argv", ["/srv/app/worker.py", "--flag"])
    assert env.service_name() == "worker.py"

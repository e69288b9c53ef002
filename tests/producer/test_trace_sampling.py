"""Whole traces sampled and linked, read back from a real broker: every LLM call of an agent run
carries the run's root id, and is kept or dropped with the others, in any process."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.runnables import RunnableLambda
from langsmith.run_helpers import tracing_context
from langsmith.run_trees import RunTree
from prometheus_client import REGISTRY, generate_latest

from labelstudio_ingest.producer import LabelStudioCallbackHandler
from labelstudio_ingest.schemas import ChatEvent

from .agents import AskingRetriever, active_span, root_id, two_step_agent
from .fakes import FailingLLM, FakeListChatModel
from .support import read_events, run_app

pytestmark = pytest.mark.integration

OTEL_TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C


@pytest.fixture
def topic(kafka_topic: Callable[..., str]) -> str:
    return kafka_topic(1)


def _ask(handler: LabelStudioCallbackHandler, root: uuid.UUID, **config: Any) -> None:
    two_step_agent(config.pop("model", None)).invoke(
        " capital of France? ", config={"run_id": root, "callbacks": [handler], **config}
    )


def test_both_llm_calls_of_an_agent_run_carry_its_root_and_the_active_trace_ids(
    kafka_bootstrap: str, topic: str, handlers: Callable[..., LabelStudioCallbackHandler]
) -> None:
    handler = handlers(bootstrap_servers=kafka_bootstrap, topic=topic)
    root = uuid.uuid4()
    span, otel_id = active_span(OTEL_TRACE_ID)
    run_tree = RunTree(name="traceable outer function", run_type="chain")

    with span:
        _ask(handler, root)
    with tracing_context(parent=run_tree, enabled=False):
        _ask(handler, uuid.uuid4())

    assert handler.flush(30)
    events = [read.event for read in read_events(kafka_bootstrap, topic, 4)]
    links = [e.trace for e in events if e.trace is not None]
    assert [(t.root_run_id, t.otel_trace_id, t.langsmith_trace_id) for t in links] == [
        (root, otel_id, None),
        (root, otel_id, None),
        # Under a LangSmith run tree LangChain's root run is its child: the run tree is the root.
        (run_tree.id, None, run_tree.trace_id),
        (run_tree.id, None, run_tree.trace_id),
    ]
    assert all(e.parent_run_id not in (None, root) for e in events)  # the agent's step, not the root
    assert len(handler._roots) == 0  # forgotten at the root's end


def test_sampling_keeps_or_drops_whole_agent_runs_in_every_process(
    kafka_bootstrap: str, topic: str, handlers: Callable[..., LabelStudioCallbackHandler]
) -> None:
    handler = handlers(bootstrap_servers=kafka_bootstrap, topic=topic, sample_rate=0.5, keep_tags=["review"])
    kept, dropped, tagged, asked, refused, failed = (
        root_id(kept=True),
        root_id(kept=False),
        root_id(kept=False),
        root_id(kept=False),
        root_id(kept=True),
        root_id(kept=False),
    )

    _ask(handler, kept)
    _ask(handler, dropped)
    _ask(handler, tagged, tags=["review"])
    _ask(handler, asked, metadata={"labelstudio_sample": True})
    _ask(handler, refused, metadata={"labelstudio_sample": False})
    with pytest.raises(RuntimeError):
        _ask(handler, failed, model=FailingLLM())
    other_process = run_app(
        f"""
        import json, uuid
        from labelstudio_ingest.producer import LabelStudioCallbackHandler
        from tests.producer.agents import two_step_agent

        handler = LabelStudioCallbackHandler(
            bootstrap_servers={kafka_bootstrap!r}, topic={topic!r}, sender="thread", sample_rate=0.5
        )
        for root in ({str(kept)!r}, {str(dropped)!r}):
            two_step_agent().invoke("q", config={{"run_id": uuid.UUID(root), "callbacks": [handler]}})
        assert handler.flush(30)
        print(json.dumps(handler.stats.dropped_by_reason))
        """
    )

    assert other_process.returncode == 0, other_process.stderr
    assert json.loads(other_process.stdout) == {"sampled_out": 2}
    assert handler.flush(30)
    assert handler.stats.dropped_by_reason == {"sampled_out": 4}
    metric = f'labelstudio_ingest_producer_dropped_total{{reason="sampled_out",topic="{topic}"}} 4.0'
    assert metric in generate_latest(REGISTRY).decode()
    events = [read.event for read in read_events(kafka_bootstrap, topic, 9)]
    per_root = Counter(e.trace.root_run_id for e in events if e.trace is not None)
    assert per_root == {kept: 4, tagged: 2, asked: 2, failed: 1}
    [failure] = [e for e in events if e.error is not None]
    assert failure.error is not None
    assert failure.error.type == "RuntimeError"
    assert handler.pending_runs == 0
    assert not handler._sampled_out


def test_an_llm_call_outside_any_chain_is_its_own_root(
    kafka_bootstrap: str, topic: str, handlers: Callable[..., LabelStudioCallbackHandler]
) -> None:
    handler = handlers(bootstrap_servers=kafka_bootstrap, topic=topic)
    run = uuid.uuid4()
    FakeListChatModel(responses=["hi"]).invoke("hello", config={"run_id": run, "callbacks": [handler]})

    assert handler.flush(30)
    [read] = read_events(kafka_bootstrap, topic, 1)
    assert isinstance(read.event, ChatEvent)
    assert read.event.trace is not None
    assert read.event.trace.root_run_id == run == read.event.run_id


def test_an_llm_call_inside_a_retriever_has_the_chains_root(
    kafka_bootstrap: str, topic: str, handlers: Callable[..., LabelStudioCallbackHandler]
) -> None:
    handler = handlers(bootstrap_servers=kafka_bootstrap, topic=topic)
    root = uuid.uuid4()
    chain = RunnableLambda(lambda q: q) | AskingRetriever()

    chain.invoke("find it", config={"run_id": root, "callbacks": [handler]})

    assert handler.flush(30)
    [read] = read_events(kafka_bootstrap, topic, 1)
    assert read.event.trace is not None
    assert read.event.trace.root_run_id == root
    assert len(handler._roots) == 0


def test_concurrent_agent_runs_keep_their_own_roots(
    kafka_bootstrap: str, topic: str, handlers: Callable[..., LabelStudioCallbackHandler]
) -> None:
    handler = handlers(bootstrap_servers=kafka_bootstrap, topic=topic)
    roots = [uuid.uuid4() for _ in range(8)]

    async def ask_all() -> None:
        await asyncio.gather(
            *(
                two_step_agent().ainvoke("q", config={"run_id": root, "callbacks": [handler]})
                for root in roots
            )
        )

    asyncio.run(ask_all())

    assert handler.flush(30)
    events = [read.event for read in read_events(kafka_bootstrap, topic, 16)]
    assert Counter(e.trace.root_run_id for e in events if e.trace is not None) == dict.fromkeys(roots, 2)
    assert len(handler._roots) == 0

"""An agent-ish LangChain run for the trace tests: a chain whose step calls a chat model twice."""

from __future__ import annotations

import uuid
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.language_models import BaseLanguageModel
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from labelstudio_ingest.producer.sampling import trace_fraction

from .fakes import FakeListChatModel


def two_step_agent(model: BaseLanguageModel[Any] | None = None) -> Runnable[str, str]:
    """``question → plan (LLM call 1) → answer (LLM call 2)``, as a sequence of lambdas: the LLM runs sit
    two levels below the root run, like the calls of a ReAct agent."""
    llm = model or FakeListChatModel(responses=["look it up", "Paris."])

    def think(question: str, config: RunnableConfig) -> str:
        plan = llm.invoke(f"Plan for: {question}", config)
        answer = llm.invoke(f"Do: {getattr(plan, 'text', plan)}", config)
        return str(getattr(answer, "text", answer))

    return RunnableLambda(lambda q: q.strip()) | RunnableLambda(think)


def root_id(*, kept: bool, rate: float = 0.5) -> uuid.UUID:
    """A fresh root run id whose trace a ``rate`` sampler keeps (or drops)."""
    while True:
        candidate = uuid.uuid4()
        if (trace_fraction(candidate) < rate) == kept:
            return candidate


class AskingRetriever(BaseRetriever):
    """A retriever that asks a chat model (as multi-query retrievers do) before it answers."""

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        answer = FakeListChatModel(responses=["a document"]).invoke(
            query, config={"callbacks": run_manager.get_child()}
        )
        return [Document(page_content=str(answer.content))]


def active_span(trace_id: int) -> tuple[AbstractContextManager[Any], str | None]:
    """A context with an OpenTelemetry span of ``trace_id`` active, and the id the event should carry;
    where opentelemetry-api is not installed (the Python-version matrix), no span and no id."""
    try:
        from opentelemetry import trace  # noqa: PLC0415
        from opentelemetry.trace import NonRecordingSpan, SpanContext  # noqa: PLC0415
    except ImportError:
        return nullcontext(), None
    span = NonRecordingSpan(SpanContext(trace_id=trace_id, span_id=1, is_remote=False))
    return trace.use_span(span), f"{trace_id:032x}"

"""Publishing LLM calls made without LangChain: a service that calls a model SDK directly sends the same
events as the callback, through the same transport, sampling, redaction and size limits.

::

    from labelstudio_ingest.producer import LabelStudioPublisher

    publisher = LabelStudioPublisher(project_name="Support-%Y-%m", mode="chat")
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    publisher.publish(
        messages=messages,                              # OpenAI-style dicts: role, content, tool_calls
        response=reply.choices[0].message.model_dump(),  # or just the text
        model=reply.model,
        token_usage=reply.usage.model_dump(),           # prompt/completion or input/output tokens
        metadata={"user": "u-1"},
        latency_ms=elapsed_ms,
    )

The inputs are converted with langchain-core's own message conversion (installed with the producer
extra), so roles and tool calls come out exactly as they do for a LangChain chat model. ``publish``
never raises and never blocks: it returns what became of the call as a :class:`PublishOutcome`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from enum import Enum
from types import TracebackType
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, convert_to_messages
from langchain_core.outputs import ChatGeneration, Generation, LLMResult

from labelstudio_ingest.producer.builder import (
    EventContext,
    RunStart,
    WireObject,
    build_event,
    start_chat_run,
    start_prompt_run,
)
from labelstudio_ingest.producer.handler import LabelStudioCallbackHandler
from labelstudio_ingest.producer.logs import RateLimitedLog
from labelstudio_ingest.producer.metrics import DropReason, ProducerStats
from labelstudio_ingest.producer.traces import trace_link
from labelstudio_ingest.schemas import Target

logger = logging.getLogger(__name__)

Response = str | Mapping[str, Any]
"""One answer: its text, or the assistant message as an OpenAI-style dict (with its tool calls)."""


class PublishOutcome(Enum):
    """What :meth:`LabelStudioPublisher.publish` did with a call."""

    QUEUED = "queued"
    """Handed to the sender; its delivery shows in ``stats`` (published, failed or dropped)."""
    SAMPLED_OUT = "sampled_out"
    """Left out by sampling (counted as ``sampled_out``)."""
    DROPPED = "dropped"
    """Not sent and counted with the reason: invalid input, oversized, buffer full, or closed."""
    DISABLED = "disabled"
    """Publishing is switched off (``enabled=False`` or ``INGEST_PRODUCER_ENABLED=false``)."""


class ReportedError(Exception):
    """An error the caller gave as text (``publish(error="...")``)."""


class LabelStudioPublisher:
    """Publishes model calls made without LangChain as interaction events.

    Takes the options of :class:`~labelstudio_ingest.producer.LabelStudioCallbackHandler` (target,
    Kafka, ``sample_rate``, ``keep_tags``, ``redact``, ``enabled``, ``sender``...), ``mode``
    defaulting to ``"chat"``. Publishers and handlers with the same Kafka settings share one producer.
    Close it (or use it as a context manager) when the service stops.
    """

    def __init__(self, **options: Any) -> None:
        options.setdefault("mode", "chat")
        self._handler = LabelStudioCallbackHandler(**options)
        self._log = RateLimitedLog(logger)

    @property
    def topic(self) -> str:
        """The topic events go to."""
        return str(self._handler.topic) if self._handler.enabled else ""

    @property
    def stats(self) -> ProducerStats:
        """The counters of this publisher's topic (see the handler's ``stats``)."""
        return self._handler.stats

    def publish(
        self,
        *,
        prompt: str | None = None,
        messages: Sequence[Mapping[str, Any] | BaseMessage] | None = None,
        response: Response | Sequence[Response] | None = None,
        model: str | None = None,
        token_usage: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        invocation_params: Mapping[str, Any] | None = None,
        error: BaseException | str | None = None,
        latency_ms: float | None = None,
        run_id: uuid.UUID | str | None = None,
        parent_run_id: uuid.UUID | str | None = None,
        root_run_id: uuid.UUID | str | None = None,
        target: Target | None = None,
    ) -> PublishOutcome:
        """Publish one model call: a ``prompt`` (text completion) or ``messages`` (chat), its
        ``response`` (a list for several answers; none for a failed call with ``error``), and what
        is known about it. ``root_run_id`` groups the calls of one larger run (an agent loop): they
        share it as their trace root and are sampled together; it defaults to the call's own
        ``run_id`` (a new one unless given). ``target`` overrides the publisher's project for this
        call. Never raises."""
        handler = self._handler
        if not handler.enabled:
            return PublishOutcome.DISABLED
        try:
            if (prompt is None) == (messages is None):
                raise ValueError("give either prompt= or messages=")
            run = _as_uuid(run_id) if run_id is not None else uuid.uuid4()
            root = _as_uuid(root_run_id) if root_run_id is not None else run
            if error is None and not handler._sampler.keeps(root, tags, metadata):
                handler._drop(DropReason.SAMPLED_OUT)
                return PublishOutcome.SAMPLED_OUT
            parent = _as_uuid(parent_run_id) if parent_run_id is not None else None
            options: dict[str, Any] = {
                "parent_run_id": parent,
                "tags": tags,
                "metadata": metadata,
                "invocation_params": invocation_params,
                "trace": trace_link(root),
            }
            start = (
                start_prompt_run([prompt], **options)
                if prompt is not None
                else start_chat_run([_messages(messages or ())], **options)
            )
            _set_latency(start, latency_ms)
            result = _result(start, response, model, token_usage)
            failure = ReportedError(error) if isinstance(error, str) else error
            event = build_event(start, run, self._context(target), response=result, error=failure)
            if latency_ms is None:  # unknown: say nothing rather than the time publish() took
                del event["started_at"], event["latency_ms"]
            return PublishOutcome.QUEUED if handler._publish(event) else PublishOutcome.DROPPED
        except Exception:
            handler._drop(DropReason.INVALID)
            self._log.warning(
                "publish", "Label Studio ingest: publish() could not build the event; dropped", exc_info=True
            )
            return PublishOutcome.DROPPED

    def flush(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds until every call so far is delivered or dropped."""
        return self._handler.flush(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Flush for up to ``timeout`` seconds and release the producer."""
        return self._handler.close(timeout)

    def __enter__(self) -> LabelStudioPublisher:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _context(self, target: Target | None) -> EventContext:
        context: EventContext = self._handler._context
        if target is None:
            return context
        fixed: WireObject = target.model_dump(mode="json", exclude_none=True)
        return EventContext(target_for=lambda _: fixed, source=context.source, redact=context.redact)


def _as_uuid(value: uuid.UUID | str) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _messages(messages: Sequence[Mapping[str, Any] | BaseMessage]) -> list[BaseMessage]:
    return convert_to_messages([m if isinstance(m, BaseMessage) else dict(m) for m in messages])


def _answer(response: Response) -> AIMessage:
    if isinstance(response, str):
        return AIMessage(content=response)
    [message] = convert_to_messages([{"role": "assistant", **response}])
    if not isinstance(message, AIMessage):
        raise ValueError(f"a response must be the assistant's message, not role {response.get('role')!r}")
    return message


def _result(
    start: RunStart,
    response: Response | Sequence[Response] | None,
    model: str | None,
    token_usage: Mapping[str, Any] | None,
) -> LLMResult | None:
    if response is None:
        return None
    answers = [response] if isinstance(response, str | Mapping) else list(response)
    messages = [_answer(answer) for answer in answers]
    generations: list[Generation] = (
        [ChatGeneration(message=message) for message in messages]
        if start.kind == "chat"
        else [Generation(text=message.text) for message in messages]
    )
    llm_output: dict[str, Any] = {}
    if model is not None:
        llm_output["model_name"] = model
    if token_usage is not None:
        llm_output["token_usage"] = dict(token_usage)
    return LLMResult(generations=[generations], llm_output=llm_output or None)


def _set_latency(start: RunStart, latency_ms: float | None) -> None:
    """Date the call's start back by its latency (the call ended just now)."""
    if latency_ms is None:
        return
    latency_s = max(float(latency_ms), 0.0) / 1000.0
    start.started = time.perf_counter() - latency_s
    start.started_at = datetime.now(start.started_at.tzinfo) - timedelta(seconds=latency_s)

"""The LangChain callback: one event per LLM run, published to Kafka without slowing the app down."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from enum import Enum
from typing import TYPE_CHECKING, Any, Final, Literal
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult

from labelstudio_ingest.producer import settings as env
from labelstudio_ingest.producer.builder import (
    EventContext,
    Kind,
    RunStart,
    SampledOut,
    WireEvent,
    WireObject,
    build_event,
    start_chat_run,
    start_prompt_run,
)
from labelstudio_ingest.producer.logs import RateLimitedLog
from labelstudio_ingest.producer.metrics import DropReason, ProducerStats
from labelstudio_ingest.producer.sampling import Sampler
from labelstudio_ingest.producer.traces import TraceRoots, trace_link
from labelstudio_ingest.producer.trajectory_handler import TrajectoryTap
from labelstudio_ingest.producer.transport import DEFAULT_FLUSH_TIMEOUT
from labelstudio_ingest.schemas import (
    DEFAULT_LIMITS,
    DEFAULT_PROJECT_NAME,
    SCHEMA_VERSION,
    Limits,
    Mode,
    Source,
    Target,
    encode_plain,
    run_key,
    version_headers,
)
from labelstudio_ingest.schemas.wire import replace_nul

if TYPE_CHECKING:  # kafka-python is imported where it runs: the sender thread, or the sender process
    from kafka import KafkaProducer

logger = logging.getLogger(__name__)

_TARGET_CACHE_SIZE = 64
_HEADERS = version_headers(SCHEMA_VERSION)


class _Removed(Enum):
    """Marks the old handler's options that moved to the consumer."""

    REMOVED = "removed"


_REMOVED: Final = _Removed.REMOVED
_MOVED_TO_CONSUMER = (
    "LabelStudioCallbackHandler no longer takes {name}=: the Label Studio URL and token now belong to the "
    "labelstudio-ingest consumer (set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY in its environment), "
    "so services no longer hold a Label Studio token. This handler publishes to Kafka: give it "
    "bootstrap_servers= (or KAFKA_BOOTSTRAP_SERVERS) and topic= (or INGEST_TOPIC)."
)


class LabelStudioCallbackHandler(BaseCallbackHandler):
    """Publishes every LLM run to Kafka, from where the labelstudio-ingest consumer imports it into
    Label Studio. A drop-in for ``langchain_community``'s handler of the same name::

        handler = LabelStudioCallbackHandler(project_name="My Project")
        llm.invoke("Tell me a story", config={"callbacks": [handler]})

    Label Studio options (as in the old handler): ``project_id`` (env ``LABEL_STUDIO_PROJECT_ID``),
    ``project_name`` (formatted with each run's date), ``project_config``, ``mode``.

    Kafka options: ``bootstrap_servers`` (env ``KAFKA_BOOTSTRAP_SERVERS``, default ``localhost:9092``),
    ``topic`` (env ``INGEST_TOPIC``, default ``llm.interactions``), ``producer`` (an existing
    ``KafkaProducer`` to share; it stays yours to close), ``producer_config`` (extra kafka-python
    settings such as ``security_protocol``, ``sasl_mechanism``, ``ssl_cafile``).

    ``redact`` (``str -> str``, e.g. to mask PII) is applied to every text before it leaves the
    process: every string of the run (prompts, messages and their names, tool calls, ids,
    generations, errors, tags, model name, metadata and invocation-parameter keys and values; see
    ``producer/builder.py``). If it raises or returns a non-string, the event is dropped (counted
    as ``redact_failed``), never sent unredacted, and the warning names only the exception's type.
    At most ``max_buffered_events`` events / ``max_buffered_bytes`` bytes wait for an unreachable
    broker; newer ones are dropped and counted. ``exit_timeout`` bounds the flush at interpreter exit.
    ``limits`` are the contract's size limits: an event over ``max_event_bytes``, or over the
    producer's ``max_request_size`` less 1 KiB of record overhead, is dropped and counted as
    ``oversized`` (never truncated: a cut response would be labelled as if it were whole).

    Sampling (``sampling.py``): ``sample_rate`` (env ``INGEST_SAMPLE_RATE``, default 1) publishes that
    share of traces, decided from each run's trace root so an agent run is kept or dropped whole;
    ``keep_tags`` (env ``INGEST_SAMPLE_KEEP_TAGS``), ``metadata={"labelstudio_sample": True|False}`` and
    failures override it; sampled-out runs are counted (``sampled_out``). Every event carries its
    trace (``traces.py``). ``enabled=False`` (env ``INGEST_PRODUCER_ENABLED=false``) makes the handler
    a no-op that starts and imports nothing (``disabled.py``).

    ``granularity="trace"`` (env ``INGEST_GRANULARITY``; default ``"call"``) publishes one trajectory
    event per agent run instead of one event per LLM call: the input, every LLM and tool step, the
    final answer, published when the outermost run the handler saw ends (``trajectory_handler.py``).

    A run whose kind differs from ``mode`` (a chat model under ``mode="prompt"``, a text LLM under
    ``mode="chat"``) is published with its real kind, and the handler warns once.

    No callback raises into the app or blocks on the network: building and encoding the event and
    handing it to a queue is the only work on the caller's thread. ``sender`` says where kafka-python
    does the rest (env ``INGEST_PRODUCER_SENDER``): ``"thread"`` (and ``"auto"``, the default), a
    background thread of this process; ``"process"``, an opt-in for CPU-bound asyncio services, a
    sender process this handler starts (isolated from the app's ``PYTHONPATH`` and ``sitecustomize``)
    so that kafka-python's pure-Python work never competes with the app for the GIL. Handlers with
    the same Kafka settings (or the same ``producer``) share one producer, buffer and sender.
    """

    raise_error: bool = False
    run_inline: bool = True  # cheap and non-blocking: no thread-pool hop under asyncio
    enabled: bool = True
    """False for a handler made with ``enabled=False`` or ``INGEST_PRODUCER_ENABLED=false``."""

    def __new__(cls, *args: Any, enabled: bool | None = None, **kwargs: Any) -> LabelStudioCallbackHandler:
        """A :class:`~labelstudio_ingest.producer.disabled.DisabledCallbackHandler` when publishing is
        switched off: it starts nothing, imports no Kafka client, and LangChain never calls it."""
        if cls is LabelStudioCallbackHandler and not env.resolve_enabled(enabled):
            from labelstudio_ingest.producer.disabled import DisabledCallbackHandler  # noqa: PLC0415

            return super().__new__(DisabledCallbackHandler)
        return super().__new__(cls)

    def __init__(
        self,
        *,
        project_id: int | str | None = None,
        project_name: str = DEFAULT_PROJECT_NAME,
        project_config: str | None = None,
        mode: Mode | str | Enum = "prompt",
        bootstrap_servers: str | Sequence[str] | None = None,
        topic: str | None = None,
        producer: KafkaProducer | None = None,
        producer_config: Mapping[str, Any] | None = None,
        redact: Callable[[str], str] | None = None,
        max_buffered_events: int | None = None,
        max_buffered_bytes: int | None = None,
        exit_timeout: float | None = None,
        limits: Limits = DEFAULT_LIMITS,
        sender: str | None = None,
        enabled: bool | None = None,
        sample_rate: float | None = None,
        keep_tags: Sequence[str] | None = None,
        granularity: str | None = None,
        api_key: _Removed = _REMOVED,
        url: _Removed = _REMOVED,
    ) -> None:
        for name, value in (("api_key", api_key), ("url", url)):
            if value is not _REMOVED:
                raise TypeError(_MOVED_TO_CONSUMER.format(name=name))
        super().__init__()
        from labelstudio_ingest.producer import shared, transport  # noqa: PLC0415 - kafka-python, when enabled

        max_buffered_events = _or(max_buffered_events, transport.DEFAULT_MAX_BUFFERED_EVENTS)
        max_buffered_bytes = _or(max_buffered_bytes, transport.DEFAULT_MAX_BUFFERED_BYTES)
        self._new_record = transport.Record
        self._release_transport = shared.release_transport
        self._runs: dict[UUID, RunStart] = {}
        self._sampled_out: dict[UUID, SampledOut] = {}
        self._roots = TraceRoots()
        self._sampler = Sampler.of(env.resolve_sample_rate(sample_rate), env.resolve_keep_tags(keep_tags))
        self._targets: dict[str, WireObject] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._log = RateLimitedLog(logger)
        self.nul_replaced = 0
        """U+0000 characters made U+FFFD in published events (the contract forbids U+0000)."""
        self.mode: Mode = _mode(mode)
        self.project_id = env.resolve_project_id(project_id)
        self.project_name = project_name
        self.project_config = project_config
        self.topic = env.resolve_topic(topic)
        self.limits = limits
        self._check_target(limits)
        if max_buffered_bytes < limits.max_event_bytes:
            raise ValueError(
                f"max_buffered_bytes ({max_buffered_bytes}) must hold at least one event "
                f"of max_event_bytes ({limits.max_event_bytes})"
            )
        if producer is not None and (bootstrap_servers is not None or producer_config):
            raise ValueError("give either producer= or bootstrap_servers=/producer_config=, not both")
        self._context = EventContext(
            target_for=self._target_for,
            source=Source(service=env.service_name(), host=env.host_name()).model_dump(
                mode="json", exclude_none=True
            ),
            redact=_checked(redact) if redact is not None else None,
        )
        producer_settings = (
            None
            if producer is not None
            else env.producer_settings(env.resolve_bootstrap_servers(bootstrap_servers), producer_config)
        )
        self.max_value_bytes = _max_value_bytes(limits, producer, producer_settings)
        """The largest encoded event this handler sends; larger ones are dropped as ``oversized``."""
        self.sender = env.resolve_sender(sender, own_producer=producer is None, settings=producer_settings)
        """Where kafka-python runs: ``"process"`` (a sender process) or ``"thread"`` (this process)."""
        self._transport = shared.acquire_transport(
            settings=producer_settings,
            producer=producer,
            max_buffered_events=max_buffered_events,
            max_buffered_bytes=max_buffered_bytes,
            exit_timeout=_or(exit_timeout, transport.DEFAULT_EXIT_TIMEOUT),
            sender=self.sender,
        )
        self.granularity = env.resolve_granularity(granularity)
        """``"call"`` (an event per LLM call) or ``"trace"`` (a trajectory event per agent run)."""
        self._tap = (
            TrajectoryTap(
                roots=self._roots,
                sampler=self._sampler,
                limits=limits,
                context=self._context,
                target_for=self._trajectory_target_for,
                submit=self._submit,
                drop=self._drop,
                max_value_bytes=self.max_value_bytes,
            )
            if self.granularity == "trace"
            else None
        )

    # -- LangChain callbacks ------------------------------------------------------------------------

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Remember a text-completion run's prompts until it ends (unless sampling leaves it out)."""
        try:
            self._started("prompt", prompts, run_id, parent_run_id, tags, metadata, kwargs)
        except Exception:
            self._callback_failed("on_llm_start")

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Remember a chat run's conversations (with real roles) until it ends (unless sampling
        leaves it out)."""
        try:
            self._started("chat", messages, run_id, parent_run_id, tags, metadata, kwargs)
        except Exception:
            self._callback_failed("on_chat_model_start")

    def _started(  # noqa: PLR0917 (the callbacks' arguments, passed on)
        self,
        kind: Literal["prompt", "chat"],
        inputs: list[str] | list[list[BaseMessage]],
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: list[str] | None,
        metadata: dict[str, Any] | None,
        kwargs: dict[str, Any],
    ) -> None:
        """The start of an LLM run: to the trajectory tap, left out by sampling, or remembered."""
        invocation_params = kwargs.get("invocation_params")
        if self._tap is not None:
            self._tap.llm_started(
                run_id,
                parent_run_id,
                inputs=inputs,
                tags=tags,
                metadata=metadata,
                invocation_params=invocation_params,
            )
            return
        root = self._roots.root_of(run_id, parent_run_id)
        if not self._sampler.keeps(root, tags, metadata):
            self._sampled_out[run_id] = SampledOut(
                kind, inputs, parent_run_id, tags, metadata, invocation_params, root
            )
            return
        self._check_mode(kind)
        start = start_prompt_run if kind == "prompt" else start_chat_run
        self._runs[run_id] = start(
            inputs,  # type: ignore[arg-type]  # prompts for "prompt", conversations for "chat"
            parent_run_id=parent_run_id,
            tags=tags,
            metadata=metadata,
            invocation_params=invocation_params,
            trace=trace_link(root),
        )

    def on_llm_end(
        self,
        response: LLMResult,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Publish the run with all its generations."""
        self._finish(run_id, response=response, error=None, callback="on_llm_end")

    def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Publish the failed run with its error (and what it generated before failing)."""
        response = kwargs.get("response")
        self._finish(
            run_id,
            response=response if isinstance(response, LLMResult) else None,
            error=error,
            callback="on_llm_error",
        )

    def on_chain_start(
        self,
        serialized: dict[str, Any],
        inputs: dict[str, Any],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Remember the chain's trace root, for the LLM runs inside it."""
        self._run_started(run_id, parent_run_id)
        if self._tap is not None:
            self._in_trace(
                "on_chain_start",
                self._tap.run_started,
                run_id,
                parent_run_id,
                inputs=inputs,
                tags=kwargs.get("tags"),
                metadata=kwargs.get("metadata"),
            )

    def on_chain_end(self, outputs: dict[str, Any], *, run_id: UUID, **kwargs: Any) -> None:
        """Forget the chain."""
        self._roots.ended(run_id)
        if self._tap is not None:
            self._in_trace("on_chain_end", self._tap.run_ended, run_id, outputs, None)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Forget the chain."""
        self._roots.ended(run_id)
        if self._tap is not None:
            self._in_trace("on_chain_error", self._tap.run_ended, run_id, None, error)

    def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Remember the tool's trace root (a tool may call a model itself)."""
        self._run_started(run_id, parent_run_id)
        if self._tap is not None:
            name = kwargs.get("name") or (serialized or {}).get("name")
            arguments = kwargs.get("inputs") or input_str
            self._in_trace(
                "on_tool_start",
                self._tap.tool_started,
                run_id,
                parent_run_id,
                name=name,
                arguments=arguments,
                tool_call_id=kwargs.get("tool_call_id"),
                tags=kwargs.get("tags"),
                metadata=kwargs.get("metadata"),
            )

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Forget the tool."""
        self._roots.ended(run_id)
        if self._tap is not None:
            self._in_trace("on_tool_end", self._tap.tool_ended, run_id, output, None)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Forget the tool."""
        self._roots.ended(run_id)
        if self._tap is not None:
            self._in_trace("on_tool_error", self._tap.tool_ended, run_id, None, error)

    @property
    def ignore_chain(self) -> bool:
        """Chains are followed (not published) for the trace root of the LLM runs inside them."""
        return False

    @property
    def ignore_agent(self) -> bool:
        """Agent steps and tools are followed (not published) for the trace root, like chains."""
        return False

    def on_retriever_start(
        self,
        serialized: dict[str, Any],
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Remember the retriever's trace root (a retriever may call a model itself)."""
        self._run_started(run_id, parent_run_id)

    def on_retriever_end(self, documents: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Forget the retriever."""
        self._roots.ended(run_id)

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Forget the retriever."""
        self._roots.ended(run_id)

    @property
    def ignore_retriever(self) -> bool:
        """Retrievers are followed (not published) for the trace root, like chains."""
        return False

    @property
    def ignore_retry(self) -> bool:
        """Retries are not LLM runs: skip their events."""
        return True

    @property
    def ignore_custom_event(self) -> bool:
        """Custom events are not LLM runs: skip them."""
        return True

    # -- public controls ----------------------------------------------------------------------------

    def flush(self, timeout: float | None = DEFAULT_FLUSH_TIMEOUT) -> bool:
        """Wait up to ``timeout`` seconds (5 by default; None waits without bound) until every event
        so far is delivered, refused or dropped. Returns whether that happened in time: False while
        Kafka is away, the events then stay buffered."""
        return self._transport.flush(timeout)

    def close(self, timeout: float | None = DEFAULT_FLUSH_TIMEOUT) -> bool:
        """Flush for up to ``timeout`` seconds (5 by default) and release the producer; what is still
        undelivered then is dropped and counted (``closed``), as are events of later runs. Returns
        whether everything was delivered."""
        with self._lock:
            if self._closed:
                return self._transport.flush(0)
            self._closed = True
        return self._release_transport(self._transport, timeout)

    @property
    def stats(self) -> ProducerStats:
        """Counters of this handler's topic on its producer: published, failed, dropped, buffered."""
        return self._transport.stats(self.topic)

    @property
    def pending_runs(self) -> int:
        """Runs started and not yet ended or failed (sampled out or not)."""
        return len(self._runs) + len(self._sampled_out)

    # -- internals ----------------------------------------------------------------------------------

    def _finish(
        self, run_id: UUID, *, response: LLMResult | None, error: BaseException | None, callback: str
    ) -> None:
        try:
            if self._tap is not None:
                self._tap.llm_ended(run_id, response, error)
                return
            start = self._runs.pop(run_id, None)
            sampled_out = self._sampled_out.pop(run_id, None) if start is None else None
            if sampled_out is not None:
                if error is None:
                    self._drop(DropReason.SAMPLED_OUT)
                    return
                start = sampled_out.start(trace_link(sampled_out.root_run_id))  # failures are always kept
            if start is None:
                self._drop(DropReason.INVALID)
                self._log.warning(
                    "no-start",
                    "Label Studio ingest: %s for run %s without its start; the run is not published",
                    callback,
                    run_id,
                )
                return
            event = build_event(start, run_id, self._context, response=response, error=error)
            self._publish(event)
        except RedactFailedError as exc:
            self._drop(DropReason.REDACT_FAILED)
            self._log.warning(
                "redact",
                "Label Studio ingest: redact raised %s; the event of run %s is dropped",
                exc.kind,
                run_id,
            )
        except Exception:
            self._drop(DropReason.INVALID)
            self._callback_failed(callback)

    def _publish(self, event: WireEvent) -> bool:
        """Encode and queue the event; False when it was dropped (and counted)."""
        run_id: UUID = event["run_id"]
        value = encode_plain(event)
        if b"\\u0000" in value:  # rare: U+0000 is not allowed in the contract's strings
            event, replaced = replace_nul(event)
            if replaced:
                value = encode_plain(event)
                self.nul_replaced += replaced
                self._log.warning("nul", "Label Studio ingest: U+0000 in run %s made U+FFFD", run_id)
        if len(value) > self.max_value_bytes:
            self._drop(DropReason.OVERSIZED)
            self._log.warning(
                "oversized",
                "Label Studio ingest: the event of run %s is %d bytes, over the %d-byte limit "
                "(max_event_bytes, or the producer's max_request_size less record overhead); dropped",
                run_id,
                len(value),
                self.max_value_bytes,
            )
            return False
        record = self._new_record(topic=self.topic, key=run_key(run_id), value=value, headers=_HEADERS)
        return self._transport.submit(record)

    def _submit(self, run_id: UUID, value: bytes) -> bool:
        record = self._new_record(topic=self.topic, key=run_key(run_id), value=value, headers=_HEADERS)
        return self._transport.submit(record)

    def _in_trace(self, callback: str, hook: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """A trace-mode hook that never raises into the app."""
        try:
            hook(*args, **kwargs)
        except RedactFailedError as exc:
            self._drop(DropReason.REDACT_FAILED)
            self._log.warning(
                "redact", "Label Studio ingest: redact raised %s; a trajectory is dropped", exc.kind
            )
        except Exception:
            self._drop(DropReason.INVALID)
            self._callback_failed(callback)

    def _run_started(self, run_id: UUID, parent_run_id: UUID | None) -> None:
        try:
            self._roots.started(run_id, parent_run_id)
        except Exception:
            self._callback_failed("trace root")

    def _drop(self, reason: DropReason) -> None:
        self._transport.counters.rejected(self.topic, reason)

    def _callback_failed(self, callback: str) -> None:
        self._log.warning(
            f"callback:{callback}",
            "Label Studio ingest: %s failed; the app goes on, the run is not published",
            callback,
            exc_info=True,
        )

    def _check_mode(self, kind: Kind) -> None:
        if kind == self.mode or kind in self._warned:
            return
        with self._lock:
            if kind in self._warned:
                return
            self._warned.add(kind)
        what = "A chat model" if kind == "chat" else "A text LLM"
        logger.warning(
            "Label Studio ingest: %s runs with a handler in mode=%r; its runs are published as %r events "
            "(pass mode=%r to create %s-mode projects). This is said once per handler.",
            what,
            self.mode,
            kind,
            kind,
            kind,
        )

    def _target_for(self, started_at: datetime) -> WireObject:
        name = started_at.astimezone().strftime(self.project_name)
        target = self._targets.get(name)
        if target is None:
            target = Target(
                project_id=self.project_id,
                project_name=name,
                project_config=self.project_config,
                mode=self.mode,
            ).model_dump(mode="json", exclude_none=True)
            if len(self._targets) >= _TARGET_CACHE_SIZE:
                self._targets.clear()
            self._targets[name] = target
        return target

    def _trajectory_target_for(self, started_at: datetime) -> WireObject:
        """The target of a trajectory: the handler's project, created with the trajectory config."""
        return {**self._target_for(started_at), "mode": "trajectory"}

    def _check_target(self, limits: Limits) -> None:
        """Fail at construction (not per run) on options no event could carry."""
        try:
            self._target_for(datetime.now(timezone.utc))
        except ValueError as exc:
            raise ValueError(f"invalid Label Studio target options: {exc}") from None
        if self.project_config is not None:
            size = len(self.project_config.encode())
            if size > limits.max_project_config_bytes:
                raise ValueError(
                    f"project_config is {size} bytes; the limit is {limits.max_project_config_bytes}"
                )


KAFKA_MAX_REQUEST_SIZE = 1_048_576
"""kafka-python's default ``max_request_size``: it refuses a larger record before sending it."""
RECORD_OVERHEAD_BYTES = 1_024
"""Room for the key, headers and record-batch framing around an event's value."""


def _max_value_bytes(
    limits: Limits, producer: KafkaProducer | None, settings: Mapping[str, Any] | None
) -> int:
    """The contract's ``max_event_bytes``, lowered to what the producer would send at all.

    An event over kafka-python's ``max_request_size`` would fail in the sender; dropping it on the
    caller's thread instead says why right away. A broker (or topic) limit below the producer's is
    still possible: such events are refused by Kafka and counted as failed, never raised.
    """
    config: Mapping[str, Any] = getattr(producer, "config", None) or settings or {}
    request_limit = int(config.get("max_request_size") or KAFKA_MAX_REQUEST_SIZE)
    return max(1, min(limits.max_event_bytes, request_limit - RECORD_OVERHEAD_BYTES))


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _mode(mode: Mode | str | Enum) -> Mode:
    value = mode.value if isinstance(mode, Enum) else mode
    if value == "prompt":
        return "prompt"
    if value == "chat":
        return "chat"
    raise ValueError(f"mode must be 'prompt' or 'chat', not {value!r}")


class RedactFailedError(Exception):
    """The redact hook raised or returned a non-string; carries only the exception's type name.

    Neither its message nor its cause holds the text that was being redacted, so that logging it
    cannot leak what redaction was meant to remove.
    """

    def __init__(self, kind: str) -> None:
        super().__init__(f"redact raised {kind}")
        self.kind = kind


def _checked(redact: Callable[[str], str]) -> Callable[[str], str]:
    def checked(text: str) -> str:
        try:
            result = redact(text)
        except Exception as exc:
            raise RedactFailedError(type(exc).__name__) from None
        if not isinstance(result, str):
            raise RedactFailedError(f"a non-string result ({type(result).__name__})")
        return result

    return checked

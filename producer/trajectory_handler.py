"""The handler's ``granularity="trace"`` mode: callbacks in, one trajectory event per agent run out.

The handler hands every LangChain callback here instead of publishing each LLM call. Sampling decides
once per trace, at its first run (the whole agent run is kept or left out; a failure inside a trace
left out is not recorded). See ``trajectory.py`` for what is recorded and how it is bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult

from labelstudio_ingest.producer.builder import EventContext, WireObject, model_name, to_message
from labelstudio_ingest.producer.metrics import DropReason
from labelstudio_ingest.producer.sampling import Sampler
from labelstudio_ingest.producer.traces import TraceRoots, trace_link
from labelstudio_ingest.producer.trajectory import TrajectoryRecorder, build_trajectory, fit
from labelstudio_ingest.schemas import Limits


class TrajectoryTap:
    """Records the traces a handler sees and publishes each as one event when its outermost run ends."""

    def __init__(
        self,
        *,
        roots: TraceRoots,
        sampler: Sampler,
        limits: Limits,
        context: EventContext,
        target_for: Callable[[datetime], WireObject],
        submit: Callable[[UUID, bytes], bool],
        drop: Callable[[DropReason], None],
        max_value_bytes: int,
    ) -> None:
        self.recorder = TrajectoryRecorder(limits)
        self._roots = roots
        self._sampler = sampler
        self._limits = limits
        self._context = context
        self._target_for = target_for
        self._submit = submit
        self._drop = drop
        self._max_value_bytes = max_value_bytes

    def run_started(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        *,
        inputs: Any,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
    ) -> UUID:
        """A chain, tool, retriever or LLM started: the root of its trace, whose recording starts here
        when this is the first run of it the handler sees."""
        root = self._roots.root_of(run_id, parent_run_id)
        if not self.recorder.has(root):
            self.recorder.begin(
                root,
                run_id,
                kept=self._sampler.keeps(root, tags, metadata),
                parent_run_id=parent_run_id,
                inputs=inputs,
                tags=tags,
                metadata=metadata,
                trace=trace_link(root),
            )
        return root

    def llm_started(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        *,
        inputs: Sequence[str] | Sequence[Sequence[BaseMessage]],
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
        invocation_params: Mapping[str, Any] | None,
    ) -> None:
        """A chat model or text LLM started: its first input becomes an LLM step's messages."""
        first = inputs[0] if inputs else []
        conversation = (
            [{"role": "user", "content": first, "tool_calls": []}]
            if isinstance(first, str)
            else [to_message(m) for m in first]
        )
        root = self.run_started(run_id, parent_run_id, inputs=first, tags=tags, metadata=metadata)
        self.recorder.llm_started(
            root, run_id, conversation, model_name(None, invocation_params or {}, metadata or {})
        )

    def llm_ended(self, run_id: UUID, response: LLMResult | None, error: BaseException | None) -> None:
        """An LLM call ended; publishes the trace when the call was its outermost run."""
        self.recorder.llm_ended(run_id, response, error)
        self.run_ended(run_id, None, error)

    def tool_started(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        *,
        name: str | None,
        arguments: Any,
        tool_call_id: str | None,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
    ) -> None:
        """A tool started with ``arguments``."""
        root = self.run_started(run_id, parent_run_id, inputs=arguments, tags=tags, metadata=metadata)
        self.recorder.tool_started(root, run_id, name, arguments, tool_call_id)

    def tool_ended(self, run_id: UUID, output: Any, error: BaseException | None) -> None:
        """A tool ended; publishes the trace when the tool was its outermost run."""
        self.recorder.tool_ended(run_id, output, error)
        self.run_ended(run_id, output, error)

    def run_ended(self, run_id: UUID, outputs: Any, error: BaseException | None) -> None:
        """Any run ended: when it was the outermost run of a trace, the trace is published."""
        record = self.recorder.finish(run_id)
        if record is None:
            return
        if not record.kept:
            self._drop(DropReason.SAMPLED_OUT)
            return
        event = build_trajectory(
            record,
            run_id,
            self._context,
            self._target_for(record.started_at),
            max_text_chars=self._limits.max_step_text_chars,
            outputs=outputs,
            error=error,
        )
        value = fit(event, record, self._max_value_bytes)
        if value is None:
            self._drop(DropReason.OVERSIZED)
            return
        self._submit(run_id, value)

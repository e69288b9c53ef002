"""The interaction event: one LLM run, as the producer publishes it and the consumer accepts it.

Versioning: ``schema_version`` is the *major* version of this contract. Additive changes
(a new optional field) keep the version, and readers ignore fields they do not know, so an
older consumer keeps working with a newer producer. A change that removes or re-types a
field bumps the version, and a consumer refuses versions it does not understand.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    NonNegativeFloat,
    NonNegativeInt,
    TypeAdapter,
    field_validator,
    model_validator,
)

from labelstudio_ingest.schemas._compat import Self, StrEnum

SCHEMA_VERSION = 1
"""The major version of the event contract this package writes and reads."""

SUPPORTED_SCHEMA_VERSIONS = frozenset({SCHEMA_VERSION})

DEFAULT_TOPIC = "llm.interactions"
"""The topic the producer publishes to and the consumer reads from, unless configured."""

DEFAULT_PROJECT_NAME = "LangChain-%Y-%m-%d"
"""The old handler's default project name; formatted with the run's date by the producer."""

Mode = Literal["prompt", "chat", "trajectory"]
"""The default label config of a new project: per call ``prompt``/``chat``, or whole runs ``trajectory``."""

KNOWN_KINDS = frozenset({"prompt", "chat", "trajectory"})
"""The event kinds this reader understands; another ``kind`` is dead-lettered as ``unsupported_kind``."""


def unsupported_version_message(version: object) -> str:
    """The one wording for an event of a schema version this reader does not understand."""
    return (
        f"unsupported schema_version {version!r}; this reader understands "
        f"{sorted(SUPPORTED_SCHEMA_VERSIONS)} (upgrade the consumer to read newer events)"
    )


class _Model(BaseModel):
    """Base for every part of the contract: unknown fields are ignored, floats are finite."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, frozen=True)


class Role(StrEnum):
    """Who wrote a chat message, in the vocabulary every fine-tuning tool reads."""

    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class ToolCall(_Model):
    """A tool call an assistant message asked for."""

    name: str
    args: dict[str, JsonValue] = Field(default_factory=dict)
    id: str | None = None


class Message(_Model):
    """One chat message."""

    role: Role
    content: str
    name: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = Field(default=None, description="For role=tool: the call it answers.")


class Generation(_Model):
    """One generated answer. Chat models also give the assistant message (with its tool calls)."""

    text: str
    message: Message | None = None
    generation_info: dict[str, JsonValue] | None = None


class TokenUsage(_Model):
    """Token counts as reported by the model provider; any may be unknown."""

    prompt_tokens: NonNegativeInt | None = None
    completion_tokens: NonNegativeInt | None = None
    total_tokens: NonNegativeInt | None = None


class RunError(_Model):
    """Why a run failed (``on_llm_error``)."""

    type: str
    message: str


class Source(_Model):
    """Where the event was produced."""

    service: str | None = None
    host: str | None = None


class TraceLink(_Model):
    """Where a run sits in a larger trace, so that every LLM call of one agent run can be found together.

    ``root_run_id`` is the run id of the outermost LangChain run (chain, agent, graph) the producer saw
    this run under: the same for every LLM call of one agent run. The other two are set when the app
    had one active: the LangSmith run tree's trace id and the OpenTelemetry span's trace id.
    """

    root_run_id: UUID | None = Field(
        default=None, description="Run id of the outermost run of the trace (the run's own id if alone)."
    )
    langsmith_trace_id: UUID | None = Field(default=None, description="The active LangSmith trace's id.")
    otel_trace_id: Annotated[str, Field(pattern="^[0-9a-f]{32}$")] | None = Field(
        default=None, description="The active OpenTelemetry trace id, 32 lowercase hex digits."
    )


class Target(_Model):
    """Which Label Studio project the run belongs to, with the old handler's options.

    ``project_id`` wins when set; otherwise ``project_name`` (already formatted by the
    producer) names the project, created on first use with ``project_config`` or the default
    config of ``mode``.
    """

    project_id: Annotated[int, Field(gt=0)] | None = None
    project_name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    project_config: str | None = Field(default=None, description="Label Studio labeling config XML.")
    mode: Mode = "prompt"

    @model_validator(mode="after")
    def _needs_a_project(self) -> Self:
        if self.project_id is None and self.project_name is None:
            raise ValueError("target needs a project_id or a project_name")
        return self


def generations_problem(lists: int, inputs: int, *, failed: bool) -> str | None:
    """What is wrong with a run's ``lists`` lists of generations for its ``inputs`` inputs, if anything.

    The contract's rule, shared with producers that build events as plain data.
    """
    if lists and lists != inputs:
        return (
            f"generations has {lists} lists but the run has {inputs} inputs; "
            "give one list of generations per input"
        )
    if not lists and not failed:
        return "a run without an error must carry its generations"
    return None


class _EventBase(_Model):
    schema_version: int = Field(description="Major version of this contract; readers refuse unknown ones.")
    event_id: UUID = Field(description="Unique per published event (a retry of the same publish keeps it).")
    run_id: UUID = Field(description="LangChain run id; the unit of exactly-once ingestion.")
    parent_run_id: UUID | None = None
    trace: TraceLink | None = Field(default=None, description="The trace the run belongs to (additive).")
    event_time: AwareDatetime = Field(description="When the event was built.")

    generations: list[list[Generation]] = Field(
        default_factory=list,
        description="One list per input (prompt or conversation), n>1 answers each. Empty for a failed run.",
    )
    model_name: str | None = None
    invocation_params: dict[str, JsonValue] = Field(default_factory=dict)
    token_usage: TokenUsage | None = None
    started_at: AwareDatetime | None = None
    ended_at: AwareDatetime | None = None
    latency_ms: NonNegativeFloat | None = None
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    source: Source = Field(default_factory=Source)
    error: RunError | None = None
    target: Target

    @property
    def inputs_count(self) -> int:
        """How many inputs (prompts or conversations) the run had."""
        raise NotImplementedError

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value not in SUPPORTED_SCHEMA_VERSIONS:
            raise ValueError(unsupported_version_message(value))
        return value

    @model_validator(mode="after")
    def _generations_match_inputs(self) -> Self:
        problem = generations_problem(len(self.generations), self.inputs_count, failed=self.error is not None)
        if problem:
            raise ValueError(problem)
        return self


class PromptEvent(_EventBase):
    """A text-completion run: one or more prompt strings (a batch call has several)."""

    kind: Literal["prompt"]
    prompts: list[str] = Field(min_length=1)

    @property
    def inputs_count(self) -> int:
        return len(self.prompts)


class ChatEvent(_EventBase):
    """A chat-model run: one or more conversations (lists of messages with real roles)."""

    kind: Literal["chat"]
    messages: list[Annotated[list[Message], Field(min_length=1)]] = Field(min_length=1)

    @property
    def inputs_count(self) -> int:
        return len(self.messages)


class StepKind(StrEnum):
    """What one step of a trajectory was."""

    LLM = "llm"
    TOOL = "tool"


class TrajectoryStep(_Model):
    """One step of an agent run, in the order the steps started: an LLM call or a tool call.

    An LLM step has ``messages`` (what this call was given that the trajectory had not shown yet:
    the whole input for the first LLM step, after that only what was added since the previous LLM
    call, e.g. tool results) and ``output`` (the assistant message, with the tool calls it asked for).
    A tool step has ``name``, ``arguments``, ``tool_call_id`` and a ``result`` or an ``error``.
    """

    index: NonNegativeInt = Field(
        description="Position among all the run's steps (gaps where steps were dropped)."
    )
    type: StepKind
    run_id: UUID | None = None
    name: str | None = Field(default=None, description="Model name (LLM step) or tool name (tool step).")
    messages: list[Message] = Field(default_factory=list)
    output: Message | None = None
    tool_call_id: str | None = None
    arguments: JsonValue | None = Field(default=None, description="Tool input: an object, or its text.")
    result: str | None = None
    error: RunError | None = None
    token_usage: TokenUsage | None = None
    started_at: AwareDatetime | None = None
    ended_at: AwareDatetime | None = None
    latency_ms: NonNegativeFloat | None = None


class TrajectoryTruncation(_Model):
    """What the producer cut to keep a trajectory inside the contract's limits (see ``limits.py``)."""

    steps_dropped: NonNegativeInt = Field(default=0, description="Steps left out (from the middle).")
    dropped_from: NonNegativeInt | None = Field(default=None, description="Index of the first step left out.")
    texts_cut: NonNegativeInt = Field(default=0, description="Texts shortened to max_step_text_chars.")
    chars_cut: NonNegativeInt = Field(default=0, description="Characters removed from those texts.")


class TrajectoryEvent(_EventBase):
    """A whole agent run (a trace): its input, every LLM and tool step in order, its final output.

    ``run_id`` is the root run of the trace, the unit of exactly-once ingestion. ``token_usage`` is
    summed over the LLM steps, ``error`` is the root run's. ``generations`` stays empty: the answer is
    ``output``. ``truncated`` says what was cut to stay within the limits; absent, nothing was.
    """

    kind: Literal["trajectory"]
    input: list[Message] = Field(min_length=1, description="The run's input, as messages.")
    steps: list[TrajectoryStep] = Field(default_factory=list)
    output: str | None = Field(default=None, description="The final answer (absent when the run failed).")
    truncated: TrajectoryTruncation | None = None

    @property
    def inputs_count(self) -> int:
        return 1

    @model_validator(mode="after")
    def _generations_match_inputs(self) -> Self:
        if self.generations:
            raise ValueError("a trajectory carries its answer in output; generations must be empty")
        return self


InteractionEvent = Annotated[PromptEvent | ChatEvent | TrajectoryEvent, Field(discriminator="kind")]
"""Any kind of event; ``kind`` says which."""

INTERACTION_EVENT_ADAPTER: TypeAdapter[PromptEvent | ChatEvent | TrajectoryEvent] = TypeAdapter(
    InteractionEvent
)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of :data:`InteractionEvent`, for producers written in other languages."""
    schema = INTERACTION_EVENT_ADAPTER.json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://labelstudio-ingest.dev/schemas/interaction-event.v{SCHEMA_VERSION}.json"
    schema["title"] = "InteractionEvent"
    schema["description"] = (
        f"One LLM run (schema_version {SCHEMA_VERSION}). Unknown properties are ignored by readers. "
        "No string (value or key) may hold U+0000: readers refuse such an event (PostgreSQL cannot "
        "store it); replace it, e.g. with U+FFFD. The Kafka record key is the run_id in canonical "
        "form: its 36 ASCII characters, lower-case hexadecimal with hyphens "
        "(e.g. 0b7e8f2c-3a4d-4e5f-8a9b-0c1d2e3f4a5b); a record keyed otherwise is re-published "
        "under that key by the consumer before it is imported."
    )
    return schema

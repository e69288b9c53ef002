"""The feedback event: one version of a reviewer's annotation of an ingested run, as published.

Published to the feedback topic (default ``llm.feedback``) by the consumer's webhook endpoint, in the
same wire format as interaction events (UTF-8 JSON, key = ``run_id``, headers ``content-type`` and
``schema-version``), so everything about one run lands on one partition of each topic.

``event_id`` is deterministic: ``uuid5(FEEDBACK_NAMESPACE, "<annotation_id>@<annotated_at>")``. Two
publications of the same annotation version carry the same id, so readers can deduplicate too.
Versioning follows the interaction event's rules (docs/ARCHITECTURE.md): additive changes keep
``schema_version``, readers ignore unknown fields.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveInt

from labelstudio_ingest.schemas.wire import encode, event_headers, event_key, strict_json

FEEDBACK_SCHEMA_VERSION = 1
"""The major version of the feedback event contract."""

DEFAULT_FEEDBACK_TOPIC = "llm.feedback"
"""The topic feedback events go to, unless configured (``INGEST_FEEDBACK_TOPIC``)."""

FEEDBACK_NAMESPACE = uuid.UUID("6b1c2f4e-3d0a-5e59-9c1a-0f6e8b7d2a41")
"""The uuid5 namespace of feedback event ids."""

FeedbackAction = Literal["created", "updated"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, frozen=True)


class FeedbackProject(_Model):
    """The Label Studio project of the task."""

    id: int
    title: str | None = None


class FeedbackRating(_Model):
    """One ``Rating`` answer: ``value`` is ``raw / max`` in [0, 1]."""

    name: str
    value: float = Field(ge=0, le=1, description="raw / max, in [0, 1]")
    raw: float
    max: PositiveInt


class FeedbackEvent(_Model):
    """A reviewer's annotation (one version of it) of a task the consumer created from a run."""

    schema_version: Literal[1] = 1
    event_id: uuid.UUID = Field(description="uuid5 of annotation id and version: equal for duplicates")
    event_time: AwareDatetime = Field(description="when the consumer built this event")
    action: FeedbackAction = Field(description="the webhook action: annotation created or updated")
    run_id: uuid.UUID = Field(description="the LangChain run the task was created from")
    prompt_index: int | None = Field(default=None, description="which input of the run the task shows")
    project: FeedbackProject
    task_id: int
    annotation_id: int
    annotated_at: AwareDatetime = Field(description="the annotation's updated_at: the version")
    reviewer_id: int | None = Field(default=None, description="Label Studio user id of the reviewer")
    cancelled: bool = Field(default=False, description="the reviewer skipped the task")
    corrected_text: str | None = Field(
        default=None, description="the reviewer's text in the correction TextArea"
    )
    model_response: str | None = Field(
        default=None, description="the model's response (the task's prediction)"
    )
    changed: bool = Field(default=False, description="corrected_text differs from model_response")
    rating: FeedbackRating | None = Field(default=None, description="the first Rating answered")
    ratings: list[FeedbackRating] = Field(default_factory=list)
    choices: dict[str, list[str]] = Field(default_factory=dict, description="Choices name → selected values")
    lead_time_s: NonNegativeFloat | None = Field(default=None, description="seconds the reviewer spent")
    textarea: str | None = Field(default=None, description="the TextArea read as the correction")


def feedback_event_id(annotation_id: int, annotated_at: datetime) -> uuid.UUID:
    """The deterministic id of one annotation version."""
    return uuid.uuid5(FEEDBACK_NAMESPACE, f"{annotation_id}@{annotated_at.isoformat()}")


encode_feedback = encode
"""The event as UTF-8 JSON (``None`` fields left out): :func:`schemas.wire.encode`."""
feedback_key = event_key
"""The record key, the run id: :func:`schemas.wire.event_key`."""
feedback_headers = event_headers
"""``content-type`` and ``schema-version``: :func:`schemas.wire.event_headers`."""


def decode_feedback(data: bytes) -> FeedbackEvent:
    """Parse one record value of the feedback topic, as strictly as interaction events.

    Raises:
        ValueError: not UTF-8 JSON as the wire allows it (an ``EventDecodeError``), or not a valid
            feedback event (a pydantic ``ValidationError``).
    """
    return FeedbackEvent.model_validate(strict_json(bytes(data)))


def feedback_json_schema() -> dict[str, Any]:
    """The JSON Schema of :class:`FeedbackEvent`, for readers written in other languages."""
    schema = FeedbackEvent.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://labelstudio-ingest.dev/schemas/feedback-event.v{FEEDBACK_SCHEMA_VERSION}.json"
    schema["title"] = "FeedbackEvent"
    schema["description"] = (
        f"A reviewer's annotation of an ingested run (schema_version {FEEDBACK_SCHEMA_VERSION}). "
        "Unknown properties are ignored by readers."
    )
    return schema


__all__ = [
    "DEFAULT_FEEDBACK_TOPIC",
    "FEEDBACK_NAMESPACE",
    "FEEDBACK_SCHEMA_VERSION",
    "FeedbackAction",
    "FeedbackEvent",
    "FeedbackProject",
    "FeedbackRating",
    "decode_feedback",
    "encode_feedback",
    "feedback_event_id",
    "feedback_headers",
    "feedback_json_schema",
    "feedback_key",
]

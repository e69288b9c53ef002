"""Read a reviewer's annotation of one of our tasks: the corrected response, the rating, the choices.

Pure logic over plain dicts (tasks and annotations as Label Studio's API returns them), shared by
``labelstudio-ingest export`` (consumer/export.py) and the webhook endpoint (consumer/webhooks.py).
The labeling config is read with the SDK's :class:`LabelInterface`:

- the correction is a ``TextArea``'s text; by default the one our predictions fill
  (``task_layout(config).textarea_name``), else the one named with ``--textarea``;
- every ``Rating`` is scaled to [0, 1] as ``rating / maxRating`` (``maxRating`` defaults to 5),
  with the raw value and the maximum kept;
- every ``Choices`` gives ``name → [selected values]``;
- every ``Number`` gives ``name → value`` (e.g. the first wrong step of a trajectory).

The model's response is the first generation of the task's prediction (consumer/tasks.py writes
it to the predicted ``TextArea``). Several annotations of one task: :func:`pick_annotation`
takes the most recently updated one that is neither cancelled nor empty (see docs/FEEDBACK.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any

from label_studio_sdk.label_interface.interface import LabelInterface

from labelstudio_ingest.consumer.labelconfig import (
    LabelConfigError,
    TaskLayout,
    normalize_config,
    task_layout,
)
from labelstudio_ingest.consumer.tasks import PROMPT_ROLE

DEFAULT_MAX_RATING = 5
"""Label Studio's ``Rating`` default ``maxRating``."""


class SkipReason(StrEnum):
    """Why a task (or an annotation) gives no record. Stable codes: reports and metrics use them."""

    NOT_ANNOTATED = "not_annotated"
    CANCELLED = "cancelled"
    EMPTY = "empty"
    NO_TEXT = "no_text"
    NO_MODEL_RESPONSE = "no_model_response"
    UNCHANGED = "unchanged"
    NO_RATING = "no_rating"
    NO_PROMPT = "no_prompt"
    BEFORE_SINCE = "before_since"
    ALREADY_EXPORTED = "already_exported"


@dataclass(frozen=True, slots=True)
class Rating:
    """One ``Rating`` answer: ``raw`` stars of ``max``, and ``scaled = raw / max`` in [0, 1]."""

    name: str
    raw: float
    max: int

    @property
    def scaled(self) -> float:
        """The rating in [0, 1] (clamped: a value above ``maxRating`` counts as the maximum)."""
        return min(1.0, max(0.0, self.raw / self.max))


@dataclass(frozen=True, slots=True)
class FeedbackConfig:
    """What a labeling config lets a reviewer say about a response."""

    layout: TaskLayout
    textarea: str
    """The ``TextArea`` holding the correction."""
    ratings: Mapping[str, int]
    """``Rating`` name → ``maxRating``, in config order."""
    choices: tuple[str, ...]
    """``Choices`` names, in config order."""
    numbers: tuple[str, ...] = ()
    """``Number`` names, in config order."""


@dataclass(frozen=True, slots=True)
class Feedback:
    """One annotation read under a :class:`FeedbackConfig`."""

    annotation_id: int
    text: str | None
    """The reviewer's text in the correction ``TextArea`` (None when they left it empty)."""
    ratings: tuple[Rating, ...] = ()
    choices: Mapping[str, list[str]] = field(default_factory=dict)
    reviewer_id: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    lead_time_s: float | None = None
    numbers: Mapping[str, float] = field(default_factory=dict)
    """``Number`` answers by name (e.g. ``first_wrong_step`` of the trajectory config)."""

    @property
    def rating(self) -> Rating | None:
        """The first ``Rating`` answered (configs usually have one)."""
        return self.ratings[0] if self.ratings else None

    @property
    def time(self) -> datetime | None:
        """When this version of the annotation was written (``updated_at``, else ``created_at``)."""
        return self.updated_at or self.created_at


def feedback_config(config_xml: str, textarea: str | None = None) -> FeedbackConfig:
    """The feedback a config collects; ``textarea`` names the correction (default: the predicted one).

    Raises:
        LabelConfigError: the config cannot hold our tasks, or has no ``TextArea`` named ``textarea``.
    """
    return _feedback_config(config_xml, textarea)


@lru_cache(maxsize=64)
def _feedback_config(config_xml: str, textarea: str | None) -> FeedbackConfig:
    layout = task_layout(config_xml)  # raises LabelConfigError for a config our tasks cannot use
    interface = LabelInterface(normalize_config(config_xml))
    controls = list(interface.controls or ())
    textareas = [c.name for c in controls if c.tag.lower() == "textarea"]
    chosen = textarea or layout.textarea_name
    if chosen not in textareas:
        raise LabelConfigError(
            f"the label config has no TextArea named {chosen!r}; it has {', '.join(map(repr, textareas))}"
        )
    ratings = {
        c.name: _max_rating(c.get_attr("maxRating", None)) for c in controls if c.tag.lower() == "rating"
    }
    choices = tuple(c.name for c in controls if c.tag.lower() == "choices")
    numbers = tuple(c.name for c in controls if c.tag.lower() == "number")
    return FeedbackConfig(layout, chosen, ratings, choices, numbers)


def _max_rating(value: object) -> int:
    try:
        number = int(str(value))
    except ValueError:
        return DEFAULT_MAX_RATING
    return number if number > 0 else DEFAULT_MAX_RATING


def read_annotation(annotation: Mapping[str, Any], config: FeedbackConfig) -> Feedback | SkipReason:
    """The feedback in one annotation, or why it has none (cancelled, or no result at all)."""
    if annotation.get("was_cancelled"):
        return SkipReason.CANCELLED
    results = annotation.get("result") or []
    if not results:
        return SkipReason.EMPTY
    texts: list[str] = []
    ratings: list[Rating] = []
    choices: dict[str, list[str]] = {}
    numbers: dict[str, float] = {}
    for item in results:
        if not isinstance(item, Mapping):
            continue
        name = item.get("from_name")
        value = item.get("value")
        if not isinstance(value, Mapping):
            continue
        if name == config.textarea:
            texts.extend(str(t) for t in _as_list(value.get("text")))
        elif name in config.ratings and isinstance(value.get("rating"), int | float):
            ratings.append(Rating(str(name), float(value["rating"]), config.ratings[str(name)]))
        elif name in config.choices:
            choices.setdefault(str(name), []).extend(str(c) for c in _as_list(value.get("choices")))
        elif name in config.numbers and _float(value.get("number")) is not None:
            numbers[str(name)] = float(value["number"])
    text = "\n".join(texts)
    if not text.strip() and not ratings and not choices and not numbers:
        return SkipReason.EMPTY
    order = {name: i for i, name in enumerate(config.ratings)}
    return Feedback(
        annotation_id=int(annotation["id"]),
        text=text if text.strip() else None,
        ratings=tuple(sorted(ratings, key=lambda r: order[r.name])),
        choices={name: choices[name] for name in config.choices if name in choices},
        reviewer_id=_user_id(annotation.get("completed_by")),
        created_at=_time(annotation.get("created_at")),
        updated_at=_time(annotation.get("updated_at")),
        lead_time_s=_float(annotation.get("lead_time")),
        numbers=numbers,
    )


def pick_annotation(
    annotations: Iterable[Mapping[str, Any]], config: FeedbackConfig
) -> Feedback | SkipReason:
    """The task's feedback: its latest usable annotation (by update time, then id).

    A task is one training example, so it yields one record; the latest non-cancelled, non-empty
    annotation is the reviewers' final word (a later review supersedes an earlier one). Without
    one, the reason of the latest annotation is returned (``not_annotated`` when there is none).
    """
    best: Feedback | None = None
    latest_reason: tuple[tuple[float, int], SkipReason] | None = None
    for annotation in annotations:
        read = read_annotation(annotation, config)
        if isinstance(read, Feedback):
            if best is None or _order(read) > _order(best):
                best = read
        else:
            key = (_timestamp(_time(annotation.get("updated_at"))), int(annotation.get("id") or 0))
            if latest_reason is None or key > latest_reason[0]:
                latest_reason = (key, read)
    if best is not None:
        return best
    return latest_reason[1] if latest_reason is not None else SkipReason.NOT_ANNOTATED


def model_response(task: Mapping[str, Any], config: FeedbackConfig) -> str | None:
    """The model's response: the first generation of the task's prediction.

    consumer/tasks.py puts it in the config's first ``TextArea`` (``layout.textarea_name``), which
    is also where it is looked for when the correction is read from another ``TextArea``; None when
    no prediction has it (a failed run, or a task not made by the consumer).
    """
    names = (config.layout.textarea_name, config.textarea)
    for name in dict.fromkeys(names):
        for prediction in task.get("predictions") or ():
            if not isinstance(prediction, Mapping):
                continue
            for item in prediction.get("result") or ():
                if isinstance(item, Mapping) and item.get("from_name") == name:
                    value = item.get("value")
                    texts = _as_list(value.get("text")) if isinstance(value, Mapping) else []
                    if texts:
                        return str(texts[0])
    return None


def prompt_messages(task: Mapping[str, Any], config: FeedbackConfig) -> list[dict[str, str]] | None:
    """The task's input as chat messages ``[{role, content}]`` (a plain prompt is one user turn)."""
    layout = config.layout
    value = (task.get("data") or {}).get(layout.data_key)
    if isinstance(value, str):
        return [{"role": PROMPT_ROLE, "content": value}]
    if isinstance(value, Sequence) and value:
        messages: list[dict[str, str]] = []
        for message in value:
            if not isinstance(message, Mapping):
                return None
            messages.append(
                {
                    "role": str(message.get(layout.name_key, PROMPT_ROLE)),
                    "content": str(message.get(layout.text_key) or ""),
                }
            )
        return messages
    return None


def prompt_value(task: Mapping[str, Any], config: FeedbackConfig) -> str | list[dict[str, str]] | None:
    """The prompt as TRL's standard (a string) or conversational (a message list) format reads it."""
    value = (task.get("data") or {}).get(config.layout.data_key)
    if isinstance(value, str):
        return value
    return prompt_messages(task, config)


def _order(feedback: Feedback) -> tuple[float, int]:
    return (_timestamp(feedback.time), feedback.annotation_id)


def _timestamp(moment: datetime | None) -> float:
    return moment.timestamp() if moment is not None else float("-inf")


def _as_list(value: object) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def _user_id(value: object) -> int | None:
    """``completed_by`` is an id in task lists and ``{id, email, ...}`` in a single task."""
    if isinstance(value, Mapping):
        value = value.get("id")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _time(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


__all__ = [
    "DEFAULT_MAX_RATING",
    "Feedback",
    "FeedbackConfig",
    "Rating",
    "SkipReason",
    "feedback_config",
    "model_response",
    "pick_annotation",
    "prompt_messages",
    "prompt_value",
    "read_annotation",
]

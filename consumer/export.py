"""Reviewed tasks as training data: SFT, preference (DPO) and reward records, one JSON line each.

Pure streaming logic; ``labelstudio-ingest export`` (consumer/export_cli.py) feeds it Label Studio's
task pager and a file. Memory stays bounded by one page of tasks plus the incremental state (the
annotation versions of the last few minutes), whatever the size of the project.

Formats (docs/FEEDBACK.md has examples):

- ``sft``: ``{"messages": [..., {"role": "assistant", "content": <reviewer's text>}]}``
- ``preference``: ``{"prompt", "chosen": <reviewer's text>, "rejected": <model's response>}`` where
  the reviewer changed the response; prompt-mode tasks use TRL's *standard* form (strings), dialogue
  tasks its *conversational* form (message lists).
- ``reward``: ``{"prompt", "response": <model's response>, "rating": 0..1, "choices": {...}}``

A trajectory task (a whole agent run, ``meta.kind == "trajectory"``) exports its run in the standard
tool-calling chat layout kept in ``meta.chat`` (assistant ``tool_calls`` with ``{id, type: "function",
function: {name, arguments}}``, ``tool`` messages with ``tool_call_id``): ``sft`` is that chat with the
reviewer's final answer; ``preference`` has the run before its final answer as the prompt and the
reviewer's and the model's final answers as ``chosen``/``rejected``; ``reward`` rates the run as a
whole (``prompt`` is the run before its final answer; ``numbers`` holds e.g. ``first_wrong_step``).
See docs/TRAJECTORIES.md.

With ``include_metadata`` each record gets a ``metadata`` object (run_id, ids, times, raw rating),
kept under one key so trainers that read the columns above ignore it.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Literal, get_args

from labelstudio_ingest.consumer.annotations import (
    Feedback,
    FeedbackConfig,
    SkipReason,
    model_response,
    pick_annotation,
    prompt_messages,
    prompt_value,
)
from labelstudio_ingest.consumer.dlq import parse_time
from labelstudio_ingest.consumer.private_file import private_output

Format = Literal["sft", "preference", "reward"]
FORMATS: tuple[str, ...] = get_args(Format)
STATE_VERSION = 1
OVERLAP = timedelta(minutes=5)
"""How far before the high-water mark an incremental export looks again (see :class:`ExportState`)."""
PROGRESS_EVERY_S = 2.0


@dataclass(frozen=True, slots=True)
class ProjectRef:
    """The project exported."""

    id: int
    title: str


@dataclass
class ExportReport:
    """What an export did: tasks read, records written, tasks skipped by reason."""

    tasks: int = 0
    exported: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        """One readable line, e.g. ``3 tasks read, 2 exported; skipped: cancelled 1``."""
        line = f"{self.tasks} tasks read, {self.exported} exported"
        if self.skipped:
            line += "; skipped: " + ", ".join(f"{r} {n}" for r, n in sorted(self.skipped.items()))
        return line


@dataclass
class ExportState:
    """What incremental exports remember between runs, in a small JSON file.

    ``high_water`` is the latest annotation time exported. The next run reads annotations updated
    after ``high_water - OVERLAP`` (an annotation saved while an export runs can carry a time a
    little older than one already seen), and skips the annotation versions in ``recent`` — those
    exported within that window — so nothing is missed and nothing is written twice.
    """

    project_id: int
    format: str
    high_water: datetime | None = None
    recent: dict[int, str] = field(default_factory=dict)
    """annotation id → ``updated_at`` (ISO) of the versions exported in the overlap window."""

    @classmethod
    def load(cls, path: Path, project_id: int, fmt: str) -> ExportState:
        """The state in ``path``, or a fresh one when the file does not exist.

        Raises:
            ValueError: the file is not a state of this project and format.
        """
        if not path.exists():
            return cls(project_id, fmt)
        try:
            raw = json.loads(path.read_text("utf-8"))
            if raw.get("version") != STATE_VERSION:
                raise ValueError(f"unknown state version {raw.get('version')!r}")
            if raw.get("project_id") != project_id or raw.get("format") != fmt:
                raise ValueError(
                    f"it is the state of project {raw.get('project_id')} format {raw.get('format')}, "
                    f"not of project {project_id} format {fmt}"
                )
            high = raw.get("high_water")
            return cls(
                project_id,
                fmt,
                datetime.fromisoformat(high) if high else None,
                {int(k): str(v) for k, v in (raw.get("recent") or {}).items()},
            )
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"bad export state file {path}: {exc}") from None

    def save(self, path: Path) -> None:
        """Write the state whole, mode 0600, never through a planted file (:func:`private_output`)."""
        body = {
            "version": STATE_VERSION,
            "project_id": self.project_id,
            "format": self.format,
            "high_water": self.high_water.isoformat() if self.high_water else None,
            "recent": {str(k): v for k, v in sorted(self.recent.items())},
        }
        with private_output(path) as stream:
            stream.write(json.dumps(body, indent=1) + "\n")

    @property
    def since(self) -> datetime | None:
        """Annotations updated at or after this time are looked at again."""
        return self.high_water - OVERLAP if self.high_water is not None else None

    def seen(self, feedback: Feedback) -> bool:
        """True if this version of the annotation was exported before."""
        moment = feedback.time
        return moment is not None and self.recent.get(feedback.annotation_id) == moment.isoformat()

    def add(self, feedback: Feedback) -> None:
        """Remember one version just exported (and raise the mark)."""
        moment = feedback.time
        if moment is None:
            return
        self.recent[feedback.annotation_id] = moment.isoformat()
        if self.high_water is None or moment > self.high_water:
            self.high_water = moment

    def prune(self) -> None:
        """Forget the versions older than the overlap window: they cannot be read again."""
        floor = self.since
        if floor is not None:
            self.recent = {k: v for k, v in self.recent.items() if datetime.fromisoformat(v) >= floor}


def build_record(
    fmt: Format,
    task: Mapping[str, Any],
    feedback: Feedback,
    config: FeedbackConfig,
    project: ProjectRef,
    *,
    include_metadata: bool = False,
) -> dict[str, Any] | SkipReason:
    """One output record of ``task`` in format ``fmt``, or why the task gives none."""
    record: dict[str, Any]
    model = model_response(task, config)
    chat = trajectory_chat_of(task)
    if chat is not None:
        outcome = _trajectory_record(fmt, chat, feedback, model)
        if isinstance(outcome, SkipReason):
            return outcome
        record = outcome
    elif fmt == "sft":
        messages = prompt_messages(task, config)
        if messages is None:
            return SkipReason.NO_PROMPT
        if feedback.text is None:
            return SkipReason.NO_TEXT
        record = {"messages": [*messages, {"role": "assistant", "content": feedback.text}]}
    elif fmt == "preference":
        prompt = prompt_value(task, config)
        if prompt is None:
            return SkipReason.NO_PROMPT
        if feedback.text is None:
            return SkipReason.NO_TEXT
        if model is None:
            return SkipReason.NO_MODEL_RESPONSE
        if feedback.text.strip() == model.strip():
            return SkipReason.UNCHANGED
        record = {"prompt": prompt, "chosen": _turn(prompt, feedback.text), "rejected": _turn(prompt, model)}
    else:
        prompt = prompt_value(task, config)
        if prompt is None:
            return SkipReason.NO_PROMPT
        rating = feedback.rating
        if rating is None:
            return SkipReason.NO_RATING
        response = model if model is not None else feedback.text
        if response is None:
            return SkipReason.NO_MODEL_RESPONSE
        record = {
            "prompt": prompt,
            "response": response,
            "rating": rating.scaled,
            "choices": dict(feedback.choices),
        }
    if include_metadata:
        record["metadata"] = metadata(task, feedback, project, model)
    return record


def trajectory_chat_of(task: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The run of a trajectory task in the tool-calling chat layout (``meta.chat``), else None."""
    meta = task.get("meta") or {}
    if not isinstance(meta, Mapping) or meta.get("kind") != "trajectory":
        return None
    chat = meta.get("chat")
    if not isinstance(chat, list) or not all(isinstance(m, Mapping) and "role" in m for m in chat):
        return None
    return [dict(m) for m in chat]


def _trajectory_record(
    fmt: Format, chat: list[dict[str, Any]], feedback: Feedback, model: str | None
) -> dict[str, Any] | SkipReason:
    """A trajectory's record: the run before its final answer, then the answer each format needs."""
    final = chat[-1] if chat else None
    if final is not None and final.get("role") == "assistant" and not final.get("tool_calls"):
        before = chat[:-1]
    else:
        before = chat
    if not before:
        return SkipReason.NO_PROMPT
    if fmt == "sft":
        if feedback.text is None:
            return SkipReason.NO_TEXT
        return {"messages": [*before, {"role": "assistant", "content": feedback.text}]}
    if fmt == "preference":
        if feedback.text is None:
            return SkipReason.NO_TEXT
        if model is None:
            return SkipReason.NO_MODEL_RESPONSE
        if feedback.text.strip() == model.strip():
            return SkipReason.UNCHANGED
        return {
            "prompt": before,
            "chosen": [{"role": "assistant", "content": feedback.text}],
            "rejected": [{"role": "assistant", "content": model}],
        }
    rating = feedback.rating
    if rating is None:
        return SkipReason.NO_RATING
    response = model if model is not None else feedback.text
    if response is None:
        return SkipReason.NO_MODEL_RESPONSE
    return {
        "prompt": before,
        "response": response,
        "rating": rating.scaled,
        "choices": dict(feedback.choices),
        "numbers": dict(feedback.numbers),
    }


def _turn(prompt: str | list[dict[str, str]], text: str) -> str | list[dict[str, str]]:
    """A completion in the prompt's form: a string, or one assistant message for a conversation."""
    return text if isinstance(prompt, str) else [{"role": "assistant", "content": text}]


def metadata(
    task: Mapping[str, Any], feedback: Feedback, project: ProjectRef, model: str | None
) -> dict[str, Any]:
    """Where a record came from: run, project, task, annotation, reviewer, times, raw ratings."""
    data = task.get("data") or {}
    meta = task.get("meta") or {}
    return {
        "run_id": data.get("run_id"),
        "prompt_index": data.get("prompt_index"),
        "project_id": project.id,
        "project_title": project.title,
        "task_id": task.get("id"),
        "annotation_id": feedback.annotation_id,
        "reviewer_id": feedback.reviewer_id,
        "annotated_at": feedback.time.isoformat() if feedback.time else None,
        "model_name": meta.get("model_name") if isinstance(meta, Mapping) else None,
        "model_response": model,
        "corrected": feedback.text,
        "ratings": {r.name: {"raw": r.raw, "max": r.max, "scaled": r.scaled} for r in feedback.ratings},
        "choices": dict(feedback.choices),
        "tags": meta.get("tags") if isinstance(meta, Mapping) else None,
        "run_metadata": meta.get("metadata") if isinstance(meta, Mapping) else None,
    }


Progress = Callable[[ExportReport], None]


def export(
    tasks: Iterable[Any],
    out: IO[str],
    *,
    fmt: Format,
    config: FeedbackConfig,
    project: ProjectRef,
    include_metadata: bool = False,
    since: datetime | None = None,
    state: ExportState | None = None,
    progress: Progress | None = None,
) -> ExportReport:
    """Write one record per usable reviewed task of ``tasks`` to ``out``; never holds more than one task.

    ``since`` keeps annotations updated at or after it; ``state`` (incremental) also skips versions
    exported before and is advanced with what was written. ``progress`` is called every couple of
    seconds with the running report.
    """
    report = ExportReport()
    floor = effective_since(since, state)
    last_progress = time.monotonic()
    for raw in tasks:
        task = as_dict(raw)
        report.tasks += 1
        outcome = _record(task, fmt, config, project, include_metadata, floor, state)
        if isinstance(outcome, SkipReason):
            report.skipped[outcome.value] += 1
        else:
            record, feedback = outcome
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            report.exported += 1
            if state is not None:
                state.add(feedback)
        if progress is not None and time.monotonic() - last_progress >= PROGRESS_EVERY_S:
            last_progress = time.monotonic()
            progress(report)
    if state is not None:
        state.prune()
    return report


def _record(  # noqa: PLR0917 (the loop body of export, kept apart for readability)
    task: Mapping[str, Any],
    fmt: Format,
    config: FeedbackConfig,
    project: ProjectRef,
    include_metadata: bool,
    floor: datetime | None,
    state: ExportState | None,
) -> tuple[dict[str, Any], Feedback] | SkipReason:
    feedback = pick_annotation(task.get("annotations") or (), config)
    if isinstance(feedback, SkipReason):
        return feedback
    if floor is not None and (feedback.time is None or feedback.time < floor):
        return SkipReason.BEFORE_SINCE
    if state is not None and state.seen(feedback):
        return SkipReason.ALREADY_EXPORTED
    record = build_record(fmt, task, feedback, config, project, include_metadata=include_metadata)
    if isinstance(record, SkipReason):
        return record
    return record, feedback


SERVER_FILTER_MARGIN = timedelta(minutes=10)
"""How much earlier than the export's floor the Label Studio query starts (:func:`updated_since_query`)."""


def effective_since(since: datetime | None, state: ExportState | None) -> datetime | None:
    """The floor ``export()`` applies: the later of ``--since`` and the incremental window."""
    return _latest(since, state.since if state is not None else None)


def updated_since_query(floor: datetime) -> str:
    """A Data Manager query for tasks updated after ``floor - SERVER_FILTER_MARGIN``.

    Label Studio sets a task's ``updated_at`` whenever one of its annotations is saved (a few
    milliseconds after the annotation's own ``updated_at``), so this lets the server skip the tasks
    an incremental or ``--since`` export would drop anyway; the exact filter stays ours.
    """
    start = (floor - SERVER_FILTER_MARGIN).astimezone(UTC)
    value = start.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # the one format its Datetime filter parses
    item = {"filter": "filter:tasks:updated_at", "operator": "greater", "type": "Datetime", "value": value}
    return json.dumps({"filters": {"conjunction": "and", "items": [item]}})


def _latest(*moments: datetime | None) -> datetime | None:
    present = [m for m in moments if m is not None]
    return max(present) if present else None


def as_dict(task: Any) -> Mapping[str, Any]:
    """A task as a plain dict (the SDK gives pydantic models; tests give dicts)."""
    if isinstance(task, Mapping):
        return task
    dumped: dict[str, Any] = task.model_dump(mode="json")
    return dumped


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``--since``: ISO 8601 (UTC when no zone is given) or a duration ago: ``30m``, ``2h``, ``7d``."""
    return parse_time(text, now or datetime.now(UTC))


__all__ = [
    "FORMATS",
    "OVERLAP",
    "ExportReport",
    "ExportState",
    "Format",
    "ProjectRef",
    "as_dict",
    "build_record",
    "effective_since",
    "export",
    "metadata",
    "parse_since",
    "updated_since_query",
]

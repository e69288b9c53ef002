"""Structured logs: one JSON object per line on stderr, with secrets masked.

Context goes in ``extra``: ``log.info("imported", extra={"project_id": 3, "tasks": 10})`` gives
``{"ts": ..., "level": "info", "logger": ..., "msg": "imported", "project_id": 3, "tasks": 10}``.
Every secret handed to :func:`configure` (the Label Studio API key, Kafka passwords) is replaced
by ``***`` wherever it would appear in a line, whatever code logged it — as written and as JSON
escapes it. A secret shorter than :data:`MIN_SUBSTRING_SECRET` characters is masked only where it
stands as a whole word, so that a toy key like ``x`` does not mangle every word that contains it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO, Any

_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime", "taskName"}
)
_MASK = "***"
MIN_SUBSTRING_SECRET = 8
"""Secrets at least this long are masked wherever they appear, shorter ones only as whole words."""


def secret_pattern(secrets: Iterable[str]) -> re.Pattern[str] | None:
    """One regex matching every secret, raw and JSON-escaped; ``None`` when there are none."""
    forms = {form for s in secrets if s for form in (s, json.dumps(s, ensure_ascii=False)[1:-1])}
    parts = [
        re.escape(form) if len(form) >= MIN_SUBSTRING_SECRET else rf"(?<!\w){re.escape(form)}(?!\w)"
        for form in sorted(forms, key=len, reverse=True)
    ]
    return re.compile("|".join(parts)) if parts else None


class Masker:
    """Replaces every secret in a text (raw or JSON-escaped) with ``***``; a no-op without secrets."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._pattern = secret_pattern(secrets)

    def __call__(self, text: str) -> str:
        return text if self._pattern is None else self._pattern.sub(_MASK, text)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line; ``extra`` fields become top-level keys."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._mask = Masker(secrets)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        line = json.dumps(entry, default=str, ensure_ascii=False)
        return self._mask(line)


def configure(level: str = "INFO", *, secrets: Iterable[str] = (), stream: IO[str] | None = None) -> None:
    """Send every log record of the process to ``stream`` (stderr) as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Chatty libraries: their INFO lines are per request or per connection.
    for name, floor in (
        ("httpx", logging.WARNING),
        ("httpcore", logging.WARNING),
        ("kafka", logging.WARNING),
    ):
        logging.getLogger(name).setLevel(max(floor, logging.getLevelName(level)))


__all__ = ["MIN_SUBSTRING_SECRET", "JsonFormatter", "Masker", "configure", "secret_pattern"]

"""Structured logs: one JSON object per line on stderr, with secrets masked.

Context goes in ``extra``: ``log.info("imported", extra={"project_id": 3, "tasks": 10})`` gives
``{"ts": ..., "level": "info", "logger": ..., "msg": "imported", "project_id": 3, "tasks": 10}``.
Every secret handed to :func:`configure` (the Label Studio API key, Kafka passwords) is replaced
by ``***`` wherever it would appear in a line, whatever code logged it.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO, Any

_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime", "taskName"}
)
_MASK = "***"


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line; ``extra`` fields become top-level keys."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

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
        for secret in self._secrets:
            line = line.replace(secret, _MASK)
        return line


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


__all__ = ["JsonFormatter", "configure"]

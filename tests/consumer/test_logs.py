"""JSON logs with extra fields, and secrets never written."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from labelstudio_ingest.consumer import logs


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    logs.configure("INFO", secrets=["tok-abc-123"], stream=out)
    try:
        yield out
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_one_json_object_per_line_with_extra_fields(stream: io.StringIO) -> None:
    logging.getLogger("x").info("imported %d", 3, extra={"project_id": 7})
    (entry,) = lines(stream)
    assert entry["msg"] == "imported 3"
    assert entry["level"] == "info"
    assert entry["logger"] == "x"
    assert entry["project_id"] == 7
    assert "ts" in entry


def test_the_api_key_is_masked_wherever_it_appears(stream: io.StringIO) -> None:
    log = logging.getLogger("y")
    log.warning("header Authorization: Token tok-abc-123", extra={"url": "http://x/?token=tok-abc-123"})
    try:
        raise RuntimeError("failed with tok-abc-123")
    except RuntimeError:
        log.exception("oops")
    text = stream.getvalue()
    assert "tok-abc-123" not in text
    assert text.count("***") >= 3


def test_exceptions_are_included(stream: io.StringIO) -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        logging.getLogger("z").exception("failed")
    (entry,) = lines(stream)
    assert "ValueError: bad" in str(entry["exc"])


def test_a_secret_that_json_escapes_is_masked_too() -> None:
    out = io.StringIO()
    formatter = logs.JsonFormatter(secrets=['pa"ss\\word-1'])
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    log = logging.getLogger("escapes")
    log.addHandler(handler)
    try:
        log.error('login with pa"ss\\word-1 failed')
    finally:
        log.removeHandler(handler)
    assert "ss\\\\word-1" not in out.getvalue()
    assert json.loads(out.getvalue())["msg"] == "login with *** failed"


def test_a_short_secret_is_masked_only_as_a_whole_word() -> None:
    pattern = logs.secret_pattern(["x"])
    assert pattern is not None
    assert pattern.sub("***", "key=x; exception in extra") == "key=***; exception in extra"

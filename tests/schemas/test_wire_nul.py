"""U+0000 is not allowed in any string of an event: decode refuses it and names where it is.

A PostgreSQL-backed Label Studio answers HTTP 500 to every import holding U+0000 (``jsonb``
cannot store it), so a record carrying it must become a dead letter, never a retried import.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any

import pytest

from labelstudio_ingest.schemas import (
    DecodeErrorReason,
    EventDecodeError,
    PromptEvent,
    Target,
    decode,
    encode,
)
from labelstudio_ingest.schemas.wire import nul_path, replace_nul


def _prompt_event() -> PromptEvent:
    """A valid prompt event (made here: the contract tests also run without the consumer installed)."""
    return PromptEvent(
        schema_version=1,
        event_id=uuid.uuid4(),
        run_id=uuid.uuid4(),
        event_time=datetime.now(timezone.utc),
        kind="prompt",
        prompts=["What is 2+2?"],
        generations=[[{"text": "4"}]],  # type: ignore[list-item]
        model_name="fake-llm",
        target=Target(project_name="P"),
    )


def _record(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(encode(_prompt_event()))
    data.update(changes)
    return data


def _refusal(data: dict[str, Any]) -> EventDecodeError:
    with pytest.raises(EventDecodeError) as caught:
        decode(json.dumps(data).encode())
    return caught.value


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"prompts": ["fine", "bad\u0000text"]}, "prompts[1]"),
        ({"metadata": {"note": "a\u0000b"}}, "metadata.note"),
        ({"metadata": {"deep": [{"x": "\u0000"}]}}, "metadata.deep[0].x"),
        ({"metadata": {"k\u0000ey": 1}}, "metadata.k\u0000ey"),
        ({"tags": ["\u0000"]}, "tags[0]"),
        ({"generations": [[{"text": "4\u0000"}]]}, "generations[0][0].text"),
    ],
)
def test_a_nul_anywhere_is_refused_naming_its_path(changes: dict[str, Any], path: str) -> None:
    error = _refusal(_record(**changes))

    assert error.reason is DecodeErrorReason.INVALID
    assert error.detail.startswith(f"{path}: holds U+0000")


def test_an_escaped_backslash_before_u0000_is_plain_text_and_accepted() -> None:
    data = _record(prompts=["a literal \\u0000 is six characters"])

    event = decode(json.dumps(data).encode())

    assert event.kind == "prompt"
    assert event.prompts == ["a literal \\u0000 is six characters"]


def test_replace_nul_makes_every_nul_a_replacement_character_and_counts_them() -> None:
    run = uuid.uuid4()
    now = datetime.now(timezone.utc)
    value = {"a\u0000": ["x\u0000y\u0000", {"z": "\u0000"}], "run_id": run, "at": now, "n": 1}

    cleaned, count = replace_nul(value)

    assert count == 4
    assert cleaned == {"a\ufffd": ["x\ufffdy\ufffd", {"z": "\ufffd"}], "run_id": run, "at": now, "n": 1}
    assert nul_path(cleaned) is None


def test_replace_nul_leaves_clean_data_as_it_is() -> None:
    value = {"a": ["b", {"c": 1.5}], "d": None}

    assert replace_nul(value) == (value, 0)

"""Reading annotations of our tasks: correction, ratings, choices, cancelled/empty, which annotation wins."""

from __future__ import annotations

from typing import Any

import pytest

from labelstudio_ingest.consumer.annotations import (
    Feedback,
    SkipReason,
    feedback_config,
    model_response,
    pick_annotation,
    prompt_messages,
    prompt_value,
    read_annotation,
)
from labelstudio_ingest.consumer.labelconfig import LabelConfigError, default_config
from tests.label_configs import CUSTOM_CONFIG

CUSTOM = feedback_config(CUSTOM_CONFIG)
CHAT = feedback_config(default_config("chat"))


def textarea(text: str | list[str], name: str = "response") -> dict[str, Any]:
    texts = [text] if isinstance(text, str) else text
    return {"from_name": name, "to_name": "prompt", "type": "textarea", "value": {"text": texts}}


def rating(stars: float, name: str = "rating") -> dict[str, Any]:
    return {"from_name": name, "to_name": "prompt", "type": "rating", "value": {"rating": stars}}


def choice(*values: str, name: str = "sentiment") -> dict[str, Any]:
    return {"from_name": name, "to_name": "prompt", "type": "choices", "value": {"choices": list(values)}}


def annotation(
    result: list[dict[str, Any]], *, id: int = 1, updated: str = "2026-01-01T10:00:00Z", **extra: Any
) -> dict[str, Any]:
    return {"id": id, "result": result, "updated_at": updated, "completed_by": 7, **extra}


def test_config_reads_textareas_ratings_and_choices() -> None:
    assert CUSTOM.textarea == "response"
    assert dict(CUSTOM.ratings) == {"rating": 5}
    assert CUSTOM.choices == ("sentiment",)
    assert feedback_config(CUSTOM_CONFIG, "user_feedback").textarea == "user_feedback"


def test_max_rating_comes_from_the_tag() -> None:
    config = CUSTOM_CONFIG.replace(
        '<Rating name="rating" toName="prompt"/>', '<Rating name="r" toName="prompt" maxRating="10"/>'
    )
    assert dict(feedback_config(config).ratings) == {"r": 10}


def test_unknown_textarea_is_a_clear_error() -> None:
    with pytest.raises(LabelConfigError, match=r"no TextArea named 'nope'.*'response', 'user_feedback'"):
        feedback_config(CUSTOM_CONFIG, "nope")


def test_full_annotation() -> None:
    read = read_annotation(
        annotation(
            [textarea("Better."), rating(4), choice("Positive")],
            created_at="2026-01-01T09:00:00Z",
            lead_time=12.5,
        ),
        CUSTOM,
    )
    assert isinstance(read, Feedback)
    assert read.text == "Better."
    assert read.rating is not None
    assert (read.rating.raw, read.rating.max, read.rating.scaled) == (4.0, 5, 0.8)
    assert read.choices == {"sentiment": ["Positive"]}
    assert read.reviewer_id == 7
    assert read.lead_time_s == 12.5
    assert read.time is not None
    assert read.time.isoformat() == "2026-01-01T10:00:00+00:00"


def test_other_textarea_as_correction() -> None:
    read = read_annotation(
        annotation([textarea("edited"), textarea("my note", "user_feedback")]),
        feedback_config(CUSTOM_CONFIG, "user_feedback"),
    )
    assert isinstance(read, Feedback)
    assert read.text == "my note"


def test_several_textarea_lines_are_joined() -> None:
    read = read_annotation(annotation([textarea(["line 1", "line 2"])]), CUSTOM)
    assert isinstance(read, Feedback)
    assert read.text == "line 1\nline 2"


def test_reviewer_as_object() -> None:
    read = read_annotation(annotation([textarea("x")], completed_by={"id": 3, "email": "a@b"}), CUSTOM)
    assert isinstance(read, Feedback)
    assert read.reviewer_id == 3


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        (annotation([textarea("x")], was_cancelled=True), SkipReason.CANCELLED),
        (annotation([]), SkipReason.EMPTY),
        (annotation([textarea("   ")]), SkipReason.EMPTY),
        (annotation([textarea("x", "user_feedback")]), SkipReason.EMPTY),
    ],
)
def test_skipped_annotations(item: dict[str, Any], reason: SkipReason) -> None:
    assert read_annotation(item, CUSTOM) is reason


def test_rating_without_text_is_feedback() -> None:
    read = read_annotation(annotation([rating(2)]), CUSTOM)
    assert isinstance(read, Feedback)
    assert read.text is None
    assert read.rating is not None
    assert read.rating.scaled == 0.4


def test_latest_usable_annotation_wins() -> None:
    older = annotation([textarea("old")], id=1, updated="2026-01-01T10:00:00Z")
    newer = annotation([textarea("new")], id=2, updated="2026-01-02T10:00:00Z")
    cancelled = annotation([], id=3, updated="2026-01-03T10:00:00Z", was_cancelled=True)
    picked = pick_annotation([newer, cancelled, older], CUSTOM)
    assert isinstance(picked, Feedback)
    assert picked.text == "new"


def test_no_usable_annotation_reports_the_latest_reason() -> None:
    assert pick_annotation([], CUSTOM) is SkipReason.NOT_ANNOTATED
    items = [
        annotation([], id=1, updated="2026-01-01T10:00:00Z"),
        annotation([], id=2, updated="2026-01-02T10:00:00Z", was_cancelled=True),
    ]
    assert pick_annotation(items, CUSTOM) is SkipReason.CANCELLED


def test_model_response_and_prompt_of_a_text_task() -> None:
    task = {
        "data": {"prompt": "What is 2+2?", "run_id": "r"},
        "predictions": [{"result": [textarea(["4", "four"])]}],
    }
    assert model_response(task, CUSTOM) == "4"
    assert prompt_messages(task, CUSTOM) == [{"role": "user", "content": "What is 2+2?"}]
    assert prompt_value(task, CUSTOM) == "What is 2+2?"
    assert model_response({"data": {}, "predictions": []}, CUSTOM) is None


def test_prompt_of_a_dialogue_task() -> None:
    dialogue = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    task = {"data": {"prompt": dialogue}}
    assert prompt_messages(task, CHAT) == dialogue
    assert prompt_value(task, CHAT) == dialogue
    assert prompt_value({"data": {}}, CHAT) is None


def test_model_response_comes_from_the_prediction_when_another_textarea_is_the_correction() -> None:
    task = {"data": {"prompt": "q"}, "predictions": [{"result": [textarea("model says")]}]}
    assert model_response(task, feedback_config(CUSTOM_CONFIG, "user_feedback")) == "model says"

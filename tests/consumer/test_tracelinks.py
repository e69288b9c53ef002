"""A run's trace in its tasks: data columns to filter on, meta.trace, and a link from a template."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from labelstudio_ingest.consumer.labelconfig import task_layout
from labelstudio_ingest.consumer.settings import Settings
from labelstudio_ingest.consumer.tasks import build_tasks
from labelstudio_ingest.consumer.tracelinks import check_url_template

from .test_settings import REQUIRED
from .test_tasks import DIALOGUE, RUN_ID, TEXT, prompt_event

ROOT = uuid.UUID("00000000-0000-4000-8000-0000000000a1")
LANGSMITH = uuid.UUID("00000000-0000-4000-8000-0000000000b2")
OTEL = "0af7651916cd43dd8448eb211c80319c"
TRACE = {"root_run_id": ROOT, "langsmith_trace_id": LANGSMITH, "otel_trace_id": OTEL}


def test_every_task_of_a_run_carries_its_trace_ids_as_columns_and_in_meta() -> None:
    tasks = build_tasks(prompt_event(["a", "b"], [["1"], ["2"]], trace=TRACE), DIALOGUE)
    for task in tasks:
        assert task["data"]["trace_id"] == str(ROOT)
        assert task["data"]["langsmith_trace_id"] == str(LANGSMITH)
        assert task["data"]["otel_trace_id"] == OTEL
        assert "trace_url" not in task["data"]
        assert task["meta"]["trace"] == {
            "root_run_id": str(ROOT),
            "langsmith_trace_id": str(LANGSMITH),
            "otel_trace_id": OTEL,
            "url": None,
        }


def test_only_the_ids_the_event_has_become_columns() -> None:
    [task] = build_tasks(prompt_event(["a"], trace={"root_run_id": ROOT}), TEXT)
    assert {k: v for k, v in task["data"].items() if "trace" in k} == {"trace_id": str(ROOT)}
    [untraced] = build_tasks(prompt_event(["a"]), TEXT)
    assert not [k for k in untraced["data"] if "trace" in k]
    assert untraced["meta"]["trace"] is None  # the key is there: every task's meta has the same keys


def test_the_link_is_the_template_filled_in_and_absent_when_a_named_id_is() -> None:
    template = "https://traces.example/t/{trace_id}?run={run_id}&otel={otel_trace_id}"
    [task] = build_tasks(prompt_event(["a"], trace=TRACE), TEXT, trace_url_template=template)
    expected = f"https://traces.example/t/{ROOT}?run={RUN_ID}&otel={OTEL}"
    assert task["data"]["trace_url"] == expected
    assert task["meta"]["trace"]["url"] == expected
    [no_otel] = build_tasks(
        prompt_event(["a"], trace={"root_run_id": ROOT}), TEXT, trace_url_template=template
    )
    assert "trace_url" not in no_otel["data"]


@pytest.mark.parametrize(
    "template",
    [
        "javascript:alert({trace_id})",
        "https://x/{secret}",
        "https://x/{trace_id.__class__}",
        "https://x/{trace_id!r}",
        "https://x/{trace_id:>40}",
        "https://x/{trace_id",
    ],
)
def test_templates_other_than_plain_http_links_with_known_names_are_refused(template: str) -> None:
    with pytest.raises(ValueError, match=r"must be an http|may name only|not a valid template"):
        check_url_template(template)


def test_the_template_setting_is_checked_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in REQUIRED.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("INGEST_TRACE_URL_TEMPLATE", "https://smith.example/r/{langsmith_trace_id}")
    assert Settings().trace_url_template == "https://smith.example/r/{langsmith_trace_id}"
    monkeypatch.setenv("INGEST_TRACE_URL_TEMPLATE", "https://smith.example/r/{token}")
    with pytest.raises(ValidationError, match="may name only"):
        Settings()
    monkeypatch.delenv("INGEST_TRACE_URL_TEMPLATE")
    assert Settings().trace_url_template is None


def test_a_project_whose_input_column_is_named_trace_id_keeps_its_input() -> None:
    layout = task_layout('<View><Text name="q" value="$trace_id"/><TextArea name="a" toName="q"/></View>')
    [task] = build_tasks(prompt_event(["the prompt"], trace=TRACE), layout)
    assert task["data"]["trace_id"] == "the prompt"
    assert task["meta"]["trace"]["root_run_id"] == str(ROOT)

"""Every task the consumer makes opens in Label Studio's labeling screen, pre-filled, and takes a review.

Real parts end to end: runs published to the broker, imported by ``labelstudio-ingest consume``,
opened by a reviewer in headless chromium, annotated through the UI, read back with
``labelstudio-ingest export``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.conftest import Imported, export_records
from tests.browser.screen import Reviewer
from tests.browser.shapes import SHAPES, STREAM_SHAPES, Shape
from tests.harness import LabelStudioServer

# The first test also waits for the session's servers, the consumer's import and the browser's login.
pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.timeout(600)]


@pytest.mark.parametrize("shape", SHAPES, ids=[s.name for s in SHAPES])
def test_task_opens_with_the_response_prefilled_and_takes_a_review(
    shape: Shape,
    imported: dict[str, Imported],
    screen: Reviewer,
    label_studio: LabelStudioServer,
    tmp_path: Path,
) -> None:
    task = imported[shape.name]
    screen.open_task(task.project_id, task.task_id)
    for text in shape.visible:
        screen.expect_visible(text)
    screen.expect_response(shape.prefilled)
    screen.shot(shape.name, for_docs=True)

    screen.write_response(shape.correction)
    screen.rate(4)
    screen.submit()
    assert screen.errors == []

    [record] = [
        r
        for r in export_records(label_studio, task.project_id, tmp_path / "export.jsonl")
        if r["metadata"]["task_id"] == task.task_id
    ]
    assert record["metadata"]["corrected"] == shape.correction
    assert record["metadata"]["ratings"]["rating"]["raw"] == 4
    assert record["metadata"]["run_id"] == shape.event["run_id"]


def test_label_stream_prefills_the_tasks_of_every_model_in_a_project(
    imported: dict[str, Imported],
    screen: Reviewer,
    label_studio: LabelStudioServer,
    tmp_path: Path,
) -> None:
    project_id = imported[STREAM_SHAPES[0].name].project_id
    by_question = {s.visible[0]: s for s in STREAM_SHAPES}
    screen.open_label_stream(project_id)
    reviewed: list[str] = []
    for _ in STREAM_SHAPES:
        question = next(q for q in by_question if q not in reviewed and screen.page.get_by_text(q).count())
        shape = by_question[question]
        screen.expect_response(shape.prefilled)
        screen.shot(shape.name, for_docs=True)
        screen.write_response(shape.correction)
        screen.rate(5)
        screen.submit()
        reviewed.append(question)
        if len(reviewed) < len(STREAM_SHAPES):
            screen.page.get_by_text(next(q for q in by_question if q not in reviewed)).wait_for()
    assert screen.errors == []

    records = export_records(label_studio, project_id, tmp_path / "export.jsonl")
    assert sorted(r["metadata"]["corrected"] for r in records) == sorted(s.correction for s in STREAM_SHAPES)
    assert {r["metadata"]["model_name"] for r in records} == {"model-a", "model-b", None}


def test_the_browser_reaches_nothing_but_label_studio(
    imported: dict[str, Imported], screen: Reviewer
) -> None:
    # Label Studio's own analytics and error reports are off, so its pages ask for nothing outside;
    # the route filter would refuse it anyway (and record it in `blocked`).
    task = imported[SHAPES[0].name]
    screen.page.goto(f"{screen.base_url}/projects/")
    screen.open_task(task.project_id, task.task_id)
    assert screen.blocked == []
    assert screen.errors == []

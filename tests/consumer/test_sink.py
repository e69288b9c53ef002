"""The Label Studio sink against a real server: bulk import, bisection on 400, run_id lookups."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote

import pytest
from label_studio_sdk import LabelStudio

from labelstudio_ingest.consumer.errors import LabelStudioUnavailable, ProjectGone
from labelstudio_ingest.consumer.metrics import Metrics
from labelstudio_ingest.consumer.sink import (
    LOOKUP_QUERY_BYTES,
    ImportReport,
    LabelStudioSink,
    Unit,
    lookup_queries,
)

pytestmark = pytest.mark.integration

CONFIG = '<View><Text name="prompt" value="$prompt"/><TextArea name="response" toName="prompt"/></View>'


def task(run_id: str, prompt: Any = "hello") -> dict[str, Any]:
    return {
        "data": {"prompt": prompt, "run_id": run_id, "prompt_index": 0},
        "predictions": [
            {
                "model_version": "m",
                "result": [
                    {
                        "from_name": "response",
                        "to_name": "prompt",
                        "type": "textarea",
                        "value": {"text": ["hi"]},
                    }
                ],
            }
        ],
    }


@pytest.fixture
def project_id(ls_client: LabelStudio) -> int:
    project = ls_client.projects.create(title=f"sink-{uuid.uuid4().hex[:10]}", label_config=CONFIG)
    assert project.id is not None
    return project.id


@pytest.fixture
def sink(ls_client: LabelStudio, label_studio: Any) -> LabelStudioSink:
    return LabelStudioSink(ls_client, label_studio.url, timeout_s=30, metrics=Metrics())


def test_units_import_in_one_request_with_their_task_ids(
    sink: LabelStudioSink, project_id: int, ls_client: LabelStudio
) -> None:
    runs = [str(uuid.uuid4()) for _ in range(5)]
    units = [Unit(r, [task(r), task(r, "second input")]) for r in runs]
    report: ImportReport[str] = ImportReport()
    seen: list[tuple[str, list[int]]] = []
    sink.import_units(project_id, units, report, lambda done: seen.extend((u.key, ids) for u, ids in done))
    assert report.requests == 1
    assert [key for key, _ in seen] == runs
    stored = {t.id: t.data["run_id"] for t in ls_client.tasks.list(project=project_id, page_size=100)}
    for run_id, ids in seen:
        assert len(ids) == 2
        assert {stored[i] for i in ids} == {run_id}


def test_a_rejected_unit_is_isolated_and_the_others_imported(
    sink: LabelStudioSink, project_id: int, ls_client: LabelStudio
) -> None:
    good = [str(uuid.uuid4()) for _ in range(6)]
    bad = str(uuid.uuid4())
    units = [Unit(r, [task(r)]) for r in good[:2]] + [Unit(bad, [task(bad, {"not": "text"})])]
    units += [Unit(r, [task(r)]) for r in good[2:]]
    report: ImportReport[str] = ImportReport()
    sink.import_units(project_id, units, report, lambda done: None)
    assert [unit.key for unit, _ in report.rejected] == [bad]
    assert "prompt" in str(report.rejected[0][1])
    assert sorted(unit.key for unit, _ in report.imported) == sorted(good)
    stored = sorted(t.data["run_id"] for t in ls_client.tasks.list(project=project_id, page_size=100))
    assert stored == sorted(good)


def test_lookups_fit_in_a_request_line_that_gunicorn_and_nginx_accept() -> None:
    run_ids = [str(uuid.uuid4()) for _ in range(500)]
    queries = lookup_queries(run_ids)
    assert all(len(quote(query, safe="")) <= LOOKUP_QUERY_BYTES for _, query in queries)
    assert LOOKUP_QUERY_BYTES + 500 < 4094  # gunicorn's limit, with room for the path and other parameters
    assert sorted(r for chunk, _ in queries for r in chunk) == sorted(run_ids)
    for chunk, query in queries:
        assert {item["value"] for item in json.loads(query)["filters"]["items"]} == chunk


def test_existing_finds_run_ids_across_lookup_chunks(sink: LabelStudioSink, project_id: int) -> None:
    present = [str(uuid.uuid4()) for _ in range(60)]
    assert len(lookup_queries(present)) > 2
    absent = [str(uuid.uuid4()) for _ in range(5)]
    report: ImportReport[str] = ImportReport()
    sink.import_units(project_id, [Unit(r, [task(r)]) for r in present], report, lambda done: None)
    found = sink.existing(project_id, present + absent)
    assert set(found) == set(present)
    assert all(len(ids) == 1 for ids in found.values())


def test_a_missing_project_is_reported_as_gone(sink: LabelStudioSink) -> None:
    report: ImportReport[str] = ImportReport()
    with pytest.raises(ProjectGone):
        sink.import_units(987_654, [Unit("r", [task(str(uuid.uuid4()))])], report, lambda done: None)


def test_an_unreachable_server_is_unavailable_and_not_applied(ls_client: LabelStudio) -> None:
    metrics = Metrics()
    closed = LabelStudio(base_url="http://127.0.0.1:9", api_key="x")
    sink = LabelStudioSink(closed, "http://127.0.0.1:9", timeout_s=2, metrics=metrics)
    report: ImportReport[str] = ImportReport()
    with pytest.raises(LabelStudioUnavailable) as caught:
        sink.import_units(1, [Unit("r", [task(str(uuid.uuid4()))])], report, lambda done: None)
    assert caught.value.kind == "connect"
    assert caught.value.maybe_applied is False
    assert metrics.registry.get_sample_value("ingest_label_studio_errors_total", {"kind": "connect"}) == 1
    assert not sink.reachable(timeout_s=1)

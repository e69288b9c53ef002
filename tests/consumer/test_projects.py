"""Resolving targets to projects against a real Label Studio, including replicas racing to create one."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from labelstudio_ingest.consumer.labelconfig import LabelConfigError, default_config
from labelstudio_ingest.consumer.projects import (
    CREATED_BY,
    Project,
    ProjectRejectedError,
    ProjectResolver,
    UnknownProjectError,
)
from labelstudio_ingest.consumer.tasks import PREDICTION_MODEL_VERSION, build_tasks
from labelstudio_ingest.schemas import SCHEMA_VERSION, ChatEvent, PromptEvent, Target
from tests.label_configs import CUSTOM_CONFIG, NO_TEXTAREA

pytestmark = pytest.mark.integration


RACERS = 4
RACE_ROUNDS = 3


def _title() -> str:
    """A fresh project title (Label Studio allows 3 to 50 characters)."""
    return f"route-{uuid.uuid4().hex[:16]}"


def _ids_titled(client: LabelStudio, title: str) -> list[int]:
    return sorted(p.id for p in client.projects.list(title=title, page_size=100) if p.title == title and p.id)


def _new_client(label_studio: Any) -> LabelStudio:
    return LabelStudio(base_url=label_studio.url, api_key=label_studio.api_key)


def test_resolve_by_id(ls_client: LabelStudio) -> None:
    created = ls_client.projects.create(title=_title(), label_config=default_config("chat"))
    assert created.id is not None
    project = ProjectResolver(ls_client).resolve(Target(project_id=created.id, mode="prompt"))
    assert (project.id, project.title) == (created.id, created.title)
    # the project's own config decides, not the event's mode
    assert project.layout.object_tag == "Paragraphs"
    assert project.layout.dialogue


def test_unknown_id_is_unknown_project(ls_client: LabelStudio) -> None:
    with pytest.raises(UnknownProjectError, match="987654"):
        ProjectResolver(ls_client).resolve(Target(project_id=987654))


def test_project_by_id_without_textarea_is_a_config_error(ls_client: LabelStudio) -> None:
    created = ls_client.projects.create(title=_title(), label_config=NO_TEXTAREA)
    assert created.id is not None
    with pytest.raises(LabelConfigError, match="no TextArea"):
        ProjectResolver(ls_client).resolve(Target(project_id=created.id))


def test_resolve_by_existing_title_uses_its_config(ls_client: LabelStudio) -> None:
    title = _title()
    created = ls_client.projects.create(title=title, label_config=CUSTOM_CONFIG)
    created_ids: list[Project] = []
    resolver = ProjectResolver(ls_client, on_created=created_ids.append)
    project = resolver.resolve(Target(project_name=title, mode="chat"))
    assert project.id == created.id
    assert project.layout.textarea_name == "response"
    assert not project.layout.dialogue
    assert created_ids == []
    assert _ids_titled(ls_client, title) == [created.id]


def test_title_match_is_exact_not_contains(ls_client: LabelStudio) -> None:
    title = _title()
    longer = ls_client.projects.create(title=f"{title}-old", label_config=default_config("prompt"))
    project = ProjectResolver(ls_client).resolve(Target(project_name=title))
    assert project.id != longer.id
    assert project.title == title


def test_surrounding_whitespace_names_the_same_project(ls_client: LabelStudio) -> None:
    title = _title()
    resolver = ProjectResolver(ls_client, cache_ttl_s=0)
    first = resolver.resolve(Target(project_name=f"  {title} "))
    again = resolver.resolve(Target(project_name=title))
    assert first.id == again.id
    assert first.title == title


def test_several_projects_with_the_title_resolve_to_the_lowest_id_and_stay(ls_client: LabelStudio) -> None:
    """Duplicates someone else made are used (lowest id) but never deleted."""
    title = _title()
    ids = [ls_client.projects.create(title=title, label_config=default_config("prompt")).id for _ in range(3)]
    assert ProjectResolver(ls_client).resolve(Target(project_name=title)).id == ids[0]
    assert _ids_titled(ls_client, title) == ids


def test_empty_duplicates_left_by_resolvers_are_removed(ls_client: LabelStudio) -> None:
    """A replica that died after creating leaves an empty duplicate: the next lookup drops it."""
    title = _title()
    config = default_config("prompt")
    ids = [
        ls_client.projects.create(
            title=title, label_config=config, description=f"{CREATED_BY} (crashed {i})"
        ).id
        for i in range(3)
    ]
    assert ids[2] is not None
    task = {"data": {"prompt": "keep me", "run_id": str(uuid.uuid4()), "prompt_index": 0}}
    ls_client.projects.import_tasks(id=ids[2], request=[task])
    assert ProjectResolver(ls_client).resolve(Target(project_name=title)).id == ids[0]
    assert _ids_titled(ls_client, title) == [ids[0], ids[2]]  # the one with a task stays


def test_create_with_custom_config(ls_client: LabelStudio) -> None:
    title = _title()
    created: list[Project] = []
    project = ProjectResolver(ls_client, on_created=created.append).resolve(
        Target(project_name=title, project_config=CUSTOM_CONFIG, mode="chat")
    )
    assert created == [project]
    stored = ls_client.projects.get(id=project.id)
    assert stored.title == title
    assert stored.label_config == CUSTOM_CONFIG
    assert (stored.description or "").startswith(CREATED_BY)
    assert (project.layout.textarea_name, project.layout.object_name) == ("response", "prompt")


def test_created_project_prelabels_with_the_consumers_predictions(ls_client: LabelStudio) -> None:
    project = ProjectResolver(ls_client).resolve(Target(project_name=_title()))
    stored = ls_client.projects.get(id=project.id)
    assert stored.show_collab_predictions is True
    assert stored.model_version == PREDICTION_MODEL_VERSION


@pytest.mark.parametrize(("mode", "object_tag"), [("prompt", "Text"), ("chat", "Paragraphs")])
def test_create_with_default_config_of_the_mode(ls_client: LabelStudio, mode: str, object_tag: str) -> None:
    target = Target(project_name=_title(), mode=mode)  # type: ignore[arg-type]
    project = ProjectResolver(ls_client).resolve(target)
    # Label Studio strips the trailing newline of a config
    assert ls_client.projects.get(id=project.id).label_config == default_config(target.mode).strip()
    assert project.layout.object_tag == object_tag


def test_config_without_textarea_is_refused_before_anything_is_created(ls_client: LabelStudio) -> None:
    title = _title()
    with pytest.raises(LabelConfigError, match="no TextArea"):
        ProjectResolver(ls_client).resolve(Target(project_name=title, project_config=NO_TEXTAREA))
    assert _ids_titled(ls_client, title) == []


def test_config_label_studio_refuses_is_a_config_error(ls_client: LabelStudio) -> None:
    config = CUSTOM_CONFIG.replace(
        '<Rating name="rating" toName="prompt"/>', '<Rating name="r" toName="nope"/>'
    )
    with pytest.raises(ProjectRejectedError, match="nope"):
        ProjectResolver(ls_client).resolve(Target(project_name=_title(), project_config=config))


def test_title_label_studio_refuses_is_a_config_error(ls_client: LabelStudio) -> None:
    with pytest.raises(ProjectRejectedError, match="50 characters"):
        ProjectResolver(ls_client).resolve(Target(project_name="x" * 51))


def test_xml_declaration_is_dropped_on_create(ls_client: LabelStudio) -> None:
    config = '<?xml version="1.0" encoding="UTF-8"?>\n' + CUSTOM_CONFIG
    project = ProjectResolver(ls_client).resolve(Target(project_name=_title(), project_config=config))
    assert ls_client.projects.get(id=project.id).label_config == CUSTOM_CONFIG


def test_unknown_title_without_create_permission_is_unknown(ls_client: LabelStudio) -> None:
    title = _title()
    with pytest.raises(UnknownProjectError, match=title):
        ProjectResolver(ls_client, allow_create=False).resolve(Target(project_name=title))
    assert _ids_titled(ls_client, title) == []


def test_answers_are_cached_until_forgotten(ls_client: LabelStudio) -> None:
    resolver = ProjectResolver(ls_client)
    target = Target(project_name=_title())
    project = resolver.resolve(target)
    by_id = Target(project_id=project.id)
    assert resolver.resolve(by_id) == project
    ls_client.projects.delete(id=project.id)
    assert resolver.resolve(target) == project  # cached: no request
    assert resolver.resolve(by_id) == project
    resolver.forget(project.id)
    with pytest.raises(UnknownProjectError):
        resolver.resolve(by_id)
    recreated = resolver.resolve(target)
    assert recreated.id != project.id


def test_a_replica_that_loses_the_race_deletes_its_duplicate(
    ls_client: LabelStudio, label_studio: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another replica's create lands just before ours: ours has the higher id and must go."""
    title = _title()
    rival = _new_client(label_studio)
    rival_ids: list[int] = []
    real_create: Callable[..., Any] = ls_client.projects.create

    def create_after_rival(**kwargs: Any) -> Any:
        first = rival.projects.create(
            title=kwargs["title"], label_config=kwargs["label_config"], description=f"{CREATED_BY} (rival)"
        )
        rival_ids.append(first.id)
        return real_create(**kwargs)

    created: list[Project] = []
    resolver = ProjectResolver(ls_client, on_created=created.append)
    monkeypatch.setattr(ls_client.projects, "create", create_after_rival)
    project = resolver.resolve(Target(project_name=title))
    assert [project.id] == rival_ids
    assert _ids_titled(ls_client, title) == rival_ids
    assert created == []


def test_a_create_retried_after_a_5xx_keeps_the_first_copy(
    ls_client: LabelStudio, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK retries a POST that got a 5xx although the project was stored: both copies are ours."""
    title = _title()
    real_create: Callable[..., Any] = ls_client.projects.create
    copies: list[int] = []

    def create_twice(**kwargs: Any) -> Any:
        copies.append(real_create(**kwargs).id)  # stored, but the answer was lost
        second = real_create(**kwargs)
        copies.append(second.id)
        return second

    created: list[Project] = []
    monkeypatch.setattr(ls_client.projects, "create", create_twice)
    project = ProjectResolver(ls_client, on_created=created.append).resolve(Target(project_name=title))
    assert project.id == copies[0]
    assert created == [project]
    assert _ids_titled(ls_client, title) == [copies[0]]


def test_a_create_that_failed_after_storing_is_found_on_retry(
    ls_client: LabelStudio, monkeypatch: pytest.MonkeyPatch
) -> None:
    title = _title()
    real_create: Callable[..., Any] = ls_client.projects.create
    stored: list[int] = []

    def create_then_fail(**kwargs: Any) -> Any:
        stored.append(real_create(**kwargs).id)
        raise ApiError(status_code=500, body={"detail": "database is locked"})

    resolver = ProjectResolver(ls_client)
    with monkeypatch.context() as patch:
        patch.setattr(ls_client.projects, "create", create_then_fail)
        with pytest.raises(ApiError):
            resolver.resolve(Target(project_name=title))
    assert resolver.resolve(Target(project_name=title)).id == stored[0]
    assert _ids_titled(ls_client, title) == stored


def test_a_duplicate_that_received_tasks_after_the_listing_is_not_deleted(
    ls_client: LabelStudio, label_studio: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica imported into the higher-id copy between our listing and our cleanup: keep it."""
    title = _title()
    config = default_config("prompt")
    lower, higher = (
        ls_client.projects.create(title=title, label_config=config, description=f"{CREATED_BY} ({side})")
        for side in ("winner", "late")
    )
    importer = _new_client(label_studio)
    real_list: Callable[..., Any] = ls_client.projects.list

    def list_then_a_replica_imports(**kwargs: Any) -> list[Any]:
        listing = list(real_list(**kwargs))  # counts as of now: both copies empty
        task = {"data": {"prompt": "hi", "run_id": str(uuid.uuid4()), "prompt_index": 0}}
        importer.projects.import_tasks(id=higher.id, request=[task])
        return listing

    monkeypatch.setattr(ls_client.projects, "list", list_then_a_replica_imports)
    assert ProjectResolver(ls_client).resolve(Target(project_name=title)).id == lower.id
    monkeypatch.undo()
    assert _ids_titled(ls_client, title) == [lower.id, higher.id]
    assert ls_client.projects.get(id=higher.id).task_number == 1


@pytest.mark.parametrize("round_", range(RACE_ROUNDS))
def test_racing_replicas_end_with_exactly_one_project(label_studio: Any, round_: int) -> None:
    title = _title()
    clients = [_new_client(label_studio) for _ in range(RACERS)]
    start = threading.Barrier(RACERS)
    created: list[Project] = []

    def replica(client: LabelStudio) -> int:
        resolver = ProjectResolver(client, on_created=created.append)
        start.wait()
        return resolver.resolve(Target(project_name=title, mode="chat")).id

    with ThreadPoolExecutor(RACERS) as pool:
        ids = list(pool.map(replica, clients))
    assert len(set(ids)) == 1
    assert _ids_titled(clients[0], title) == [ids[0]]
    assert [p.id for p in created] == [ids[0]]
    task = {
        "data": {
            "prompt": [{"role": "user", "content": "hi"}],
            "run_id": str(uuid.uuid4()),
            "prompt_index": 0,
        }
    }
    assert clients[0].projects.import_tasks(id=ids[0], request=[task]).task_count == 1


def _event(kind: str, project_id: int) -> PromptEvent | ChatEvent:
    common: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "event_id": uuid.uuid4(),
        "run_id": uuid.uuid4(),
        "event_time": datetime.now(UTC),
        "model_name": "gpt-test",
        "tags": ["it"],
        "metadata": {"case": kind},
        "token_usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        "latency_ms": 12.5,
        "source": {"service": "route-tests"},
        "target": {"project_id": project_id},
    }
    if kind == "prompt":
        return PromptEvent(
            kind="prompt",
            prompts=["2+2?", "3+3?"],
            generations=[[{"text": "4"}, {"text": "four"}], [{"text": "6"}]],
            **common,
        )
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    return ChatEvent(kind="chat", messages=[conversation], generations=[[{"text": "Hello."}]], **common)


@pytest.mark.parametrize(("kind", "mode"), [("prompt", "prompt"), ("chat", "chat"), ("chat", "prompt")])
def test_built_tasks_import_and_read_back_with_predictions(
    ls_client: LabelStudio, kind: str, mode: str
) -> None:
    resolver = ProjectResolver(ls_client)
    project = resolver.resolve(Target(project_name=_title(), mode=mode))  # type: ignore[arg-type]
    event = _event(kind, project.id)
    tasks = build_tasks(event, project.layout)
    imported = ls_client.projects.import_tasks(id=project.id, request=tasks, return_task_ids=True)
    assert imported.task_count == len(tasks)
    stored = sorted(
        ls_client.tasks.list(project=project.id, fields="all"), key=lambda t: t.data["prompt_index"]
    )
    assert [t.data for t in stored] == [t["data"] for t in tasks]
    assert [t.meta for t in stored] == [t["meta"] for t in tasks]
    for task, expected in zip(stored, tasks, strict=True):
        [prediction] = task.predictions or []
        assert prediction.model_version == PREDICTION_MODEL_VERSION
        assert prediction.result == expected["predictions"][0]["result"]


def test_failed_run_imports_without_prediction(ls_client: LabelStudio) -> None:
    project = ProjectResolver(ls_client).resolve(Target(project_name=_title()))
    event = PromptEvent(
        kind="prompt",
        prompts=["p"],
        schema_version=SCHEMA_VERSION,
        event_id=uuid.uuid4(),
        run_id=uuid.uuid4(),
        event_time=datetime.now(UTC),
        error={"type": "TimeoutError", "message": "model timed out"},
        target={"project_id": project.id},
    )
    ls_client.projects.import_tasks(id=project.id, request=build_tasks(event, project.layout))
    [task] = list(ls_client.tasks.list(project=project.id, fields="all"))
    assert not task.predictions
    assert task.meta is not None
    assert task.meta["error"] == {"type": "TimeoutError", "message": "model timed out"}

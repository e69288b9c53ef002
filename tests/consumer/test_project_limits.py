"""Which new projects events may create, how many per hour, and what refusals cost Label Studio."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
from label_studio_sdk import LabelStudio

from labelstudio_ingest.consumer.allowlist import (
    CreationBudget,
    CreationNotAllowedError,
    CreationPolicy,
    ProjectLimitError,
    TargetAllowlist,
    TargetNotAllowedError,
)
from labelstudio_ingest.consumer.configsafety import UnsafeLabelConfigError
from labelstudio_ingest.consumer.projects import ProjectResolver, UnknownProjectError
from labelstudio_ingest.schemas import Target


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- pure rules ------------------------------------------------------------------------------------


def test_creation_patterns_allow_matching_titles_only() -> None:
    policy = CreationPolicy(name_patterns=("LangChain-*",))
    assert policy.refusal("LangChain-2026-11-28") is None
    refusal = policy.refusal("Payroll")
    assert isinstance(refusal, CreationNotAllowedError)
    assert isinstance(refusal, TargetNotAllowedError)  # dead-lettered as not_allowed
    assert "INGEST_CREATE_PROJECT_NAMES" in str(refusal)
    assert CreationPolicy().refusal("anything") is None


def test_the_budget_allows_n_per_rolling_hour_and_takes_back_failures() -> None:
    clock = Clock()
    budget = CreationBudget(2, clock=clock)
    assert budget.take()
    clock.now += 1800
    assert budget.take()
    assert not budget.take()
    refusal = budget.full()
    assert isinstance(refusal, ProjectLimitError)
    assert "INGEST_MAX_PROJECTS_PER_HOUR" in str(refusal)
    assert "30 min" in str(refusal)  # the first slot frees an hour after it was taken
    budget.give_back()
    assert budget.take()  # a failed creation does not count
    clock.now += 1800
    assert budget.full() is None
    assert budget.take()
    assert not budget.take()


def test_no_cap_means_no_budget() -> None:
    budget = CreationBudget(0)
    assert all(budget.take() for _ in range(1000))
    assert budget.full() is None


# --- against a real Label Studio, counting its requests -------------------------------------------


class Counted:
    """A Label Studio client whose requests are counted by (method, path)."""

    def __init__(self, label_studio: Any) -> None:
        self.requests: Counter[tuple[str, str]] = Counter()
        http = httpx.Client(timeout=60, event_hooks={"request": [self._count]})
        self.client = LabelStudio(base_url=label_studio.url, api_key=label_studio.api_key, httpx_client=http)

    def _count(self, request: httpx.Request) -> None:
        self.requests[(request.method, request.url.path)] += 1

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    @property
    def created(self) -> int:
        return self.requests[("POST", "/api/projects/")]


def _title(prefix: str = "limit") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def test_a_flood_of_unknown_titles_that_may_not_be_created_costs_one_listing(label_studio: Any) -> None:
    counted = Counted(label_studio)
    resolver = ProjectResolver(counted.client, creation=CreationPolicy(name_patterns=("LangChain-*",)))
    with pytest.raises(CreationNotAllowedError):
        resolver.resolve(Target(project_name=_title()))
    one_listing = counted.total  # of every title (as many pages as Label Studio has projects / 100)
    for _ in range(50):
        with pytest.raises(CreationNotAllowedError):
            resolver.resolve(Target(project_name=_title()))
    assert counted.total == one_listing
    assert set(counted.requests) == {("GET", "/api/projects/")}


def test_a_flood_with_creation_off_costs_one_listing(label_studio: Any) -> None:
    counted = Counted(label_studio)
    resolver = ProjectResolver(counted.client, allow_create=False)
    with pytest.raises(UnknownProjectError):
        resolver.resolve(Target(project_name=_title()))
    one_listing = counted.total
    for _ in range(50):
        with pytest.raises(UnknownProjectError, match="creating projects is disabled"):
            resolver.resolve(Target(project_name=_title()))
    assert counted.total == one_listing


def test_an_existing_title_outside_the_creation_patterns_is_still_found(
    label_studio: Any, ls_client: LabelStudio
) -> None:
    title = _title("manual")
    made = ls_client.projects.create(
        title=title,
        label_config="<View><Text name='prompt' value='$prompt'/>"
        "<TextArea name='response' toName='prompt'/></View>",
    )
    resolver = ProjectResolver(
        Counted(label_studio).client, creation=CreationPolicy(name_patterns=("LangChain-*",))
    )
    assert resolver.resolve(Target(project_name=title)).id == made.id


def test_creations_beyond_the_hourly_cap_are_refused_and_cached(label_studio: Any) -> None:
    counted = Counted(label_studio)
    resolver = ProjectResolver(counted.client, creation=CreationPolicy(max_per_hour=2))
    made = [resolver.resolve(Target(project_name=_title())).id for _ in range(2)]
    assert len(set(made)) == 2
    assert counted.created == 2
    over = _title()
    with pytest.raises(ProjectLimitError, match="INGEST_MAX_PROJECTS_PER_HOUR"):
        resolver.resolve(Target(project_name=over))
    one_listing = counted.total
    for _ in range(20):  # the same title again and again: refused from the cache
        with pytest.raises(ProjectLimitError, match="INGEST_MAX_PROJECTS_PER_HOUR"):
            resolver.resolve(Target(project_name=over))
    for _ in range(20):  # other new titles: answered from the same listing of every title
        with pytest.raises(ProjectLimitError):
            resolver.resolve(Target(project_name=_title()))
    assert counted.created == 2
    assert counted.total == one_listing


def test_a_refused_config_does_not_use_up_the_cap(label_studio: Any) -> None:
    counted = Counted(label_studio)
    resolver = ProjectResolver(counted.client, creation=CreationPolicy(max_per_hour=1))
    unsafe = "<View><Text name='prompt' value='$prompt'/><TextArea name='r' toName='prompt'/><script/></View>"
    with pytest.raises(UnsafeLabelConfigError):
        resolver.resolve(Target(project_name=_title(), project_config=unsafe))
    assert resolver.resolve(Target(project_name=_title())).id > 0  # the slot is still free
    assert counted.created == 1


def test_the_allowlist_still_refuses_before_any_request(label_studio: Any) -> None:
    counted = Counted(label_studio)
    resolver = ProjectResolver(
        counted.client,
        allowlist=TargetAllowlist(name_patterns=("LangChain-*",)),
        creation=CreationPolicy(name_patterns=("LangChain-*",), max_per_hour=1),
    )
    for _ in range(10):
        with pytest.raises(TargetNotAllowedError):
            resolver.resolve(Target(project_name=_title()))
    assert counted.total == 0


def test_over_the_cap_an_unusable_config_is_named_not_the_cap(label_studio: Any) -> None:
    resolver = ProjectResolver(Counted(label_studio).client, creation=CreationPolicy(max_per_hour=1))
    resolver.resolve(Target(project_name=_title()))
    unsafe = "<View><Text name='prompt' value='$prompt'/><TextArea name='r' toName='prompt'/><script/></View>"
    with pytest.raises(UnsafeLabelConfigError):  # its dead letter is not one to replay later
        resolver.resolve(Target(project_name=_title(), project_config=unsafe))
    with pytest.raises(ProjectLimitError):
        resolver.resolve(Target(project_name=_title()))

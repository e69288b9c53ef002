"""Find (or create) the Label Studio project of an event's target, with exactly one project per title.

``target.project_id`` names an existing project. Otherwise ``target.project_name`` names the
project by title: the existing one, or a new one with ``target.project_config`` or the default
config of ``target.mode``. Replicas that race to create the same title converge on the project
with the lowest id and delete their own duplicate; docs/ROUTING.md gives the ordering argument.

Refusals are cheap: an answer about a target (unknown, not creatable, over the creation cap, an
unusable config) is cached per target for a few seconds, and a title that could not be created
anyway is looked up in one cached listing of every title, so a flood of records naming unknown
titles costs one listing per :data:`NEGATIVE_CACHE_TTL_S`, not one request per record.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from labelstudio_ingest.consumer.allowlist import (
    CreationBudget,
    CreationPolicy,
    ProjectLimitError,
    TargetAllowlist,
    TargetNotAllowedError,
)
from labelstudio_ingest.consumer.configsafety import check_config_safety
from labelstudio_ingest.consumer.labelconfig import (
    LabelConfigError,
    TaskLayout,
    default_config,
    normalize_config,
    task_layout,
)
from labelstudio_ingest.consumer.tasks import PREDICTION_MODEL_VERSION
from labelstudio_ingest.schemas import Target

log = logging.getLogger(__name__)

LIST_PAGE_SIZE = 100
"""Label Studio's largest page of ``GET /api/projects/``."""

LIST_FIELDS = "id,title,label_config,description,task_number"
"""``include`` of the title lookup: only these fields, and of the per-project counters only this one."""

INDEX_FIELDS = "id,title"
"""``include`` of the listing of every title (:meth:`ProjectResolver._title_index`)."""

CREATED_BY = "Created by labelstudio-ingest"
"""Start of the description of every project a resolver creates; marks duplicates it may delete."""

NEGATIVE_CACHE_TTL_S = 10.0
"""How long an unknown project id or an unusable project config is remembered (capped by the TTL)."""

MAX_CACHE_ENTRIES = 10_000
"""Answers kept at most; expired ones are dropped first when the cache is full."""

_HTTP_BAD_REQUEST = 400
_HTTP_NOT_FOUND = 404


class UnknownProjectError(LookupError):
    """The target names a project that does not exist (and may not be created)."""


class ProjectRejectedError(LabelConfigError):
    """Label Studio refused to create the project (HTTP 400): its title or label config is invalid."""


@dataclass(frozen=True, slots=True)
class Project:
    """A Label Studio project that can receive runs, with the layout of its own label config."""

    id: int
    title: str
    layout: TaskLayout


_CacheKey = tuple[str, int | str]
_Refusal = UnknownProjectError | LabelConfigError | TargetNotAllowedError | ProjectLimitError
"""A final answer about the target that depends only on Label Studio's state and the consumer's
settings and creation count (briefly cached)."""


class ProjectResolver:
    """Resolves targets to projects, caching answers for ``cache_ttl_s`` seconds. Thread-safe.

    Errors of Label Studio itself (transport errors, 5xx, 401/403) propagate unchanged so the
    caller can retry; only answers about the target (:class:`UnknownProjectError`,
    :class:`LabelConfigError`) are final.
    """

    def __init__(
        self,
        client: LabelStudio,
        *,
        allow_create: bool = True,
        allowlist: TargetAllowlist | None = None,
        cache_ttl_s: float = 300.0,
        on_created: Callable[[Project], None] | None = None,
        settle_s: float = 0.0,
        creation: CreationPolicy | None = None,
    ) -> None:
        """Args:
        client: the Label Studio client every call goes through.
        allow_create: create a project for an unknown ``project_name``; otherwise such a target
            raises :class:`UnknownProjectError`.
        allowlist: the projects targets may name; others raise
            :class:`~labelstudio_ingest.consumer.allowlist.TargetNotAllowedError` before any request.
        cache_ttl_s: how long a resolved project is reused without asking Label Studio (0: never).
        on_created: called with each project this resolver created and kept (not with duplicates
            it created and deleted after losing a race).
        settle_s: wait this long before the listing that decides a title's project. 0 is exact when
            Label Studio's database makes project ids visible in id order (SQLite); for PostgreSQL
            it must exceed the longest project-creation transaction (the service passes
            ``INGEST_PROJECT_SETTLE_S``, 1 s by default), see docs/ROUTING.md.
        creation: which unknown titles may be created (patterns) and how many per hour; titles it
            refuses are dead letters ``not_allowed`` / ``project_limit`` (default: any, no cap).
        """
        self._client = client
        self._allow_create = allow_create
        self._allowlist = allowlist or TargetAllowlist()
        self._ttl = cache_ttl_s
        self._negative_ttl = min(cache_ttl_s, NEGATIVE_CACHE_TTL_S)
        self._on_created = on_created
        self._settle_s = settle_s
        self._cache: dict[_CacheKey, tuple[float, Project | _Refusal]] = {}
        self._lock = threading.Lock()
        self._creation = creation or CreationPolicy()
        self._budget = CreationBudget(self._creation.max_per_hour)
        self._index: tuple[float, frozenset[str]] | None = None
        self._index_lock = threading.Lock()

    def resolve(self, target: Target) -> Project:
        """The project the target names: by id, else by title (created on first use).

        Raises:
            TargetNotAllowedError: the target is outside the allowlist.
            UnknownProjectError: ``project_id`` does not exist, or the title does not and
                ``allow_create`` is False.
            LabelConfigError: the project's (or, for a new project, the event's) label config
                cannot receive runs; :class:`ProjectRejectedError` when Label Studio refused to
                create the project; :class:`UnsafeLabelConfigError` when the event's config for a
                new project could run script in the labelling page.
        """
        self._allowlist.check(target)
        project_id = target.project_id
        if project_id is not None:
            return self._cached(("id", project_id), lambda: self._by_id(project_id))
        assert target.project_name is not None  # Target guarantees an id or a name
        title = normalize_title(target.project_name)
        return self._cached(("title", title), lambda: self._by_title(title, target))

    def forget(self, project_id: int) -> None:
        """Drop every cached answer that names ``project_id`` (e.g. after a 404 on import)."""
        with self._lock:
            for key in [k for k, (_, v) in self._cache.items() if _names(v, project_id, k)]:
                del self._cache[key]

    def _cached(self, key: _CacheKey, load: Callable[[], Project | _Refusal]) -> Project:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            answer = hit[1]
        else:
            answer = load()
            ttl = self._ttl if isinstance(answer, Project) else self._negative_ttl
            if ttl > 0:
                with self._lock:
                    if len(self._cache) >= MAX_CACHE_ENTRIES:  # e.g. a flood of unknown project ids
                        self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
                        if len(self._cache) >= MAX_CACHE_ENTRIES:
                            self._cache.clear()
                    self._cache[key] = (time.monotonic() + ttl, answer)
        if isinstance(answer, Project):
            return answer
        raise type(answer)(*answer.args)  # a fresh exception: a cached one would pile up tracebacks

    def _by_id(self, project_id: int) -> Project | _Refusal:
        try:
            found = self._client.projects.get(id=project_id)
        except ApiError as exc:
            if exc.status_code == _HTTP_NOT_FOUND:
                return UnknownProjectError(f"project_id {project_id} does not exist in Label Studio")
            raise
        return _project(found)

    def _by_title(self, title: str, target: Target) -> Project | _Refusal:
        refusal = self._creation_refusal(title)
        if refusal is not None and title not in self._title_index():
            return _own_fault_first(title, target, refusal)  # absent, not creatable: no lookup of its own
        matches = self._titled(title)
        if matches and self._settle_s > 0:
            time.sleep(self._settle_s)
            matches = self._titled(title)
        if matches:
            self._remove_duplicates(matches)
            return _project(matches[0])
        if refusal is not None:
            return _own_fault_first(title, target, refusal)
        if not self._budget.take():
            return self._budget.full() or ProjectLimitError("INGEST_MAX_PROJECTS_PER_HOUR reached")
        try:
            return self._create(title, target)
        except BaseException:
            self._budget.give_back()  # refused before or by Label Studio, or unknown: not counted
            raise

    def _creation_refusal(self, title: str) -> _Refusal | None:
        """Why ``title`` could not become a new project now (creation off, pattern, cap), or None."""
        if not self._allow_create:
            return UnknownProjectError(
                f"no project titled {title!r} exists and creating projects is disabled"
            )
        return self._creation.refusal(title) or self._budget.full()

    def _title_index(self) -> frozenset[str]:
        """Every project title, from one listing reused for the negative-cache time."""
        with self._index_lock:
            now = time.monotonic()
            if self._index is None or self._index[0] <= now:
                pager: Iterable[Any] = self._client.projects.list(
                    ordering="id", page_size=LIST_PAGE_SIZE, include=INDEX_FIELDS
                )
                titles = frozenset(p.title for p in pager if p.title)
                self._index = (time.monotonic() + max(self._negative_ttl, 0.0), titles)
            return self._index[1]

    def _create(self, title: str, target: Target) -> Project | _Refusal:
        """Create the project, then keep whichever project has the lowest id with that title.

        Errors in the event's own config are raised, not returned: they are not cached.
        """
        config = normalize_config(
            target.project_config if target.project_config is not None else default_config(target.mode)
        )
        try:
            if target.project_config is not None:  # untrusted markup; our defaults are not
                check_config_safety(config)
            task_layout(config)  # refuse before anything is created
        except LabelConfigError as exc:
            raise type(exc)(f"cannot create project {title!r}: {exc}") from None
        description = f"{CREATED_BY} (creation {uuid.uuid4()})"
        try:
            mine = self._client.projects.create(
                title=title,
                label_config=config,
                description=description,
                # Open every task with the model's response in the reviewer's annotation, ready to edit:
                # predictions pre-label tasks, and the selected model version is the one every
                # prediction of the consumer carries (docs/REVIEWING.md).
                show_collab_predictions=True,
                model_version=PREDICTION_MODEL_VERSION,
            )
        except ApiError as exc:
            if exc.status_code == _HTTP_BAD_REQUEST:
                raise ProjectRejectedError(
                    f"Label Studio refused to create project {title!r}: {_detail(exc.body)}"
                ) from None
            raise
        if self._settle_s > 0:
            time.sleep(self._settle_s)
        # Our project is visible now; so is every project with the title and a lower id.
        matches = self._titled(title) or [mine]
        canonical = matches[0]
        self._remove_duplicates(matches)
        project = _project(canonical)
        if canonical.description != description:
            log.info("project %r: another replica created id %s first", title, canonical.id)
        elif isinstance(project, Project):
            log.info("created project %s %r", project.id, title)
            if self._on_created is not None:
                self._on_created(project)
        return project

    def _titled(self, title: str) -> list[Any]:
        """The visible projects titled exactly ``title``, lowest id first."""
        # `title` filters by "contains, case-insensitive": keep exact matches only.
        pager: Iterable[Any] = self._client.projects.list(
            title=title, ordering="id", page_size=LIST_PAGE_SIZE, include=LIST_FIELDS
        )
        return sorted((p for p in pager if p.title == title and p.id is not None), key=lambda p: p.id)

    def _remove_duplicates(self, matches: list[Any]) -> None:
        """Delete the empty projects a resolver created that lost to ``matches[0]``.

        Nobody routes to them (every resolver takes the lowest id), so they stay empty; projects
        made by people or other tools (no :data:`CREATED_BY` description) are never touched. The
        listing's counts may be stale by the time it is acted on (a resolver that decided before
        the settle guard could still be importing), so each candidate is read again right before
        its delete and kept if it holds any task.
        """
        for duplicate in matches[1:]:
            if _is_empty_duplicate(duplicate) and self._still_empty_duplicate(duplicate.id):
                log.info("deleting duplicate project %s %r", duplicate.id, duplicate.title)
                self._delete_quietly(duplicate.id)

    def _still_empty_duplicate(self, project_id: int) -> bool:
        """Whether the project, read now, is still one of ours without tasks (False once gone)."""
        try:
            fresh = self._client.projects.get(id=project_id)
        except ApiError as exc:
            if exc.status_code != _HTTP_NOT_FOUND:
                log.warning("could not re-read duplicate project %s (%s); it stays", project_id, exc)
            return False
        if not _is_empty_duplicate(fresh):
            log.warning("duplicate project %s received tasks; it stays (see docs/ROUTING.md)", project_id)
            return False
        return True

    def _delete_quietly(self, project_id: int) -> None:
        """Delete a duplicate; a failure leaves an empty project nobody routes to."""
        try:
            self._client.projects.delete(id=project_id)
        except ApiError as exc:
            if exc.status_code != _HTTP_NOT_FOUND:
                log.warning("could not delete duplicate project %s (%s); it stays empty", project_id, exc)


def _own_fault_first(title: str, target: Target, refusal: _Refusal) -> _Refusal:
    """``refusal``, unless it is the creation cap and the event's own config could never be used:
    then that (raised, like :meth:`ProjectResolver._create` does) — replaying it would not help."""
    if isinstance(refusal, ProjectLimitError) and target.project_config is not None:
        config = normalize_config(target.project_config)
        try:
            check_config_safety(config)
            task_layout(config)
        except LabelConfigError as exc:
            raise type(exc)(f"cannot create project {title!r}: {exc}") from None
    return refusal


def normalize_title(name: str) -> str:
    """A project name as Label Studio stores it as a title (it strips surrounding whitespace)."""
    return name.strip()


def _is_empty_duplicate(found: Any) -> bool:
    """A project a resolver created (:data:`CREATED_BY`) that holds no task, by this reading."""
    return (found.description or "").startswith(CREATED_BY) and not found.task_number


def _project(found: Any) -> Project | LabelConfigError:
    """A :class:`Project` from an SDK project; its own label config decides the layout."""
    try:
        layout = task_layout(found.label_config or "")
    except LabelConfigError as exc:
        return LabelConfigError(f"project {found.id} ({found.title!r}) cannot receive LLM runs: {exc}")
    return Project(id=found.id, title=found.title or "", layout=layout)


def _names(answer: Project | _Refusal, project_id: int, key: _CacheKey) -> bool:
    return (isinstance(answer, Project) and answer.id == project_id) or key == ("id", project_id)


def _detail(body: object) -> str:
    if isinstance(body, dict):
        parts = body.get("validation_errors") or body.get("detail") or body
        return str(parts)
    return str(body)

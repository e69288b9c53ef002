"""Which projects events may write to and create: an allowlist, creation patterns, a creation cap.

Anyone who can write to the input topic chooses an event's target. Without an allowlist every
project the consumer's token can reach is a target; with one, an event whose target is not on it
is dead-lettered (reason ``not_allowed``) before Label Studio is asked anything. A
:class:`CreationPolicy` narrows which unknown titles may become new projects (``not_allowed``
otherwise) and caps creations per hour (``project_limit`` beyond it, see :class:`CreationBudget`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from labelstudio_ingest.schemas import Target


class TargetNotAllowedError(PermissionError):
    """An event names a project outside the consumer's allowlist."""


@dataclass(frozen=True, slots=True)
class TargetAllowlist:
    """Project ids and title patterns (``fnmatch``: ``*``, ``?``, ``[...]``, case-sensitive).

    Empty (both parts empty) allows every target. Otherwise a target is allowed when its
    ``project_id`` is listed, or its ``project_name`` (surrounding whitespace stripped, as Label
    Studio stores titles) matches a pattern, e.g. ``LangChain-*`` for the default dated names.
    """

    project_ids: frozenset[int] = frozenset()
    name_patterns: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        """Whether the allowlist restricts anything."""
        return bool(self.project_ids or self.name_patterns)

    def check(self, target: Target) -> None:
        """Raise :class:`TargetNotAllowedError` unless ``target`` is allowed."""
        if not self.active:
            return
        if target.project_id is not None:
            if target.project_id not in self.project_ids:
                raise TargetNotAllowedError(
                    f"project_id {target.project_id} is not in INGEST_ALLOWED_PROJECT_IDS"
                )
            return
        assert target.project_name is not None  # Target guarantees an id or a name
        title = target.project_name.strip()
        if not any(fnmatchcase(title, pattern) for pattern in self.name_patterns):
            raise TargetNotAllowedError(
                f"project_name {title[:100]!r} matches no pattern of INGEST_ALLOWED_PROJECT_NAMES"
            )


class CreationNotAllowedError(TargetNotAllowedError):
    """An event names a new title that the creation patterns do not allow (dead letter ``not_allowed``)."""


class ProjectLimitError(Exception):
    """Creating the project would exceed the cap on projects created per hour (``project_limit``).

    Not the record's fault: replay its dead letter (``dlq replay --reason project_limit``) once
    the cap has room again, or after raising it.
    """


@dataclass(frozen=True, slots=True)
class CreationPolicy:
    """Which new projects events may create: title patterns (fnmatch, empty: any) and a cap on
    creations per rolling hour (0: none). The allowlist still applies to every target first."""

    name_patterns: tuple[str, ...] = ()
    max_per_hour: int = 0

    def refusal(self, title: str) -> CreationNotAllowedError | None:
        """Why ``title`` may not be created by pattern, or None."""
        if not self.name_patterns or any(fnmatchcase(title, p) for p in self.name_patterns):
            return None
        return CreationNotAllowedError(
            f"no project titled {title[:100]!r} exists, and the title matches no pattern of "
            "INGEST_CREATE_PROJECT_NAMES: it may not be created"
        )


class CreationBudget:
    """Projects created in the last hour, against :attr:`CreationPolicy.max_per_hour`. Thread-safe.

    A sliding window: a slot taken at time t frees at t + 3600 s (``window_s``). Slots of
    creations that failed are given back.
    """

    def __init__(
        self, max_per_window: int, *, window_s: float = 3600.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max = max_per_window
        self._window = window_s
        self._clock = clock
        self._taken: deque[float] = deque()
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        while self._taken and self._taken[0] <= now - self._window:
            self._taken.popleft()

    def full(self) -> ProjectLimitError | None:
        """The refusal when no slot is free now (nothing is taken), else None."""
        if self._max <= 0:
            return None
        with self._lock:
            self._expire(self._clock())
            if len(self._taken) < self._max:
                return None
            frees_in = self._taken[0] + self._window - self._clock()
        return ProjectLimitError(
            f"this consumer created {self._max} projects in the last hour (INGEST_MAX_PROJECTS_PER_HOUR); "
            f"the next may be created in {max(frees_in, 0) / 60:.0f} min: replay this dead letter then"
        )

    def take(self) -> bool:
        """Take a slot for a creation about to be sent; False when none is free."""
        if self._max <= 0:
            return True
        with self._lock:
            now = self._clock()
            self._expire(now)
            if len(self._taken) >= self._max:
                return False
            self._taken.append(now)
            return True

    def give_back(self) -> None:
        """Free the newest slot (the creation it was taken for failed)."""
        if self._max <= 0:
            return
        with self._lock:
            if self._taken:
                self._taken.pop()

"""Which projects events may write to: an optional allowlist of project ids and title patterns.

Anyone who can write to the input topic chooses an event's target. Without an allowlist every
project the consumer's token can reach is a target; with one, an event whose target is not on it
is dead-lettered (reason ``not_allowed``) before Label Studio is asked anything.
"""

from __future__ import annotations

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

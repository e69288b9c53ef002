"""Which targets the allowlist lets through (pure logic)."""

from __future__ import annotations

import pytest

from labelstudio_ingest.consumer.allowlist import TargetAllowlist, TargetNotAllowedError
from labelstudio_ingest.schemas import Target


def test_empty_allowlist_allows_everything() -> None:
    allowlist = TargetAllowlist()
    assert not allowlist.active
    allowlist.check(Target(project_id=7))
    allowlist.check(Target(project_name="anything"))


@pytest.mark.parametrize(
    ("target", "allowed"),
    [
        (Target(project_id=3), True),
        (Target(project_id=4), False),
        (Target(project_name="LangChain-2026-11-21"), True),
        (Target(project_name="  LangChain-2026-11-21 "), True),  # titles are stripped, as in Label Studio
        (Target(project_name="langchain-2026-11-21"), False),  # case-sensitive
        (Target(project_name="support"), True),
        (Target(project_name="support-bot"), False),
        (Target(project_name="Other"), False),
    ],
)
def test_ids_and_title_patterns(target: Target, allowed: bool) -> None:
    allowlist = TargetAllowlist(frozenset({3}), ("LangChain-*", "support"))
    if allowed:
        allowlist.check(target)
    else:
        with pytest.raises(TargetNotAllowedError, match="INGEST_ALLOWED_PROJECT_"):
            allowlist.check(target)


def test_only_names_listed_refuses_every_id() -> None:
    with pytest.raises(TargetNotAllowedError, match="project_id 3 is not in INGEST_ALLOWED_PROJECT_IDS"):
        TargetAllowlist(name_patterns=("LangChain-*",)).check(Target(project_id=3))

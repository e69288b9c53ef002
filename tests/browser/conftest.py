"""One chromium, one logged-in reviewer and one consumer run per session for the browser tests.

Every shape of :mod:`tests.browser.shapes` is published to the real broker and imported by a real
``labelstudio-ingest consume`` process into four projects the consumer creates itself (prompt
config, chat config, a custom config, and one shared by three models for the label stream).
Screenshots go to ``$BROWSER_SHOTS`` if set, else to a temporary directory (a failed test prints the
path of its own); ``$BROWSER_DOCS_SHOTS`` also writes small copies (how docs/images/reviewing/ was
made).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient
from label_studio_sdk.client import LabelStudio

from tests.browser.screen import CHROMIUM, CHROMIUM_FLAGS, Reviewer
from tests.browser.shapes import SHAPES, STREAM_SHAPES, event_of
from tests.consumer.runner import ConsumerProcess, Publisher, eventually, project_titled, tasks_of
from tests.harness import LabelStudioServer
from tests.label_configs import CUSTOM_CONFIG


@dataclass(frozen=True)
class Imported:
    """A task the consumer imported: its project and the task as Label Studio returns it."""

    project_id: int
    task_id: int
    task: Any


@pytest.fixture(scope="session")
def shots_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: ``$BROWSER_SHOTS`` or a session temporary directory."""
    chosen = os.environ.get("BROWSER_SHOTS")
    path = Path(chosen) if chosen else tmp_path_factory.mktemp("browser-shots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def docs_shots() -> Path | None:
    """``$BROWSER_DOCS_SHOTS``: where small copies of the shape screenshots go (docs/images/reviewing)."""
    chosen = os.environ.get("BROWSER_DOCS_SHOTS")
    return Path(chosen) if chosen else None


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """Debian's chromium, headless, driven by Playwright (no browser download, ever).

    Package-scoped: Playwright's sync API keeps an event loop running on the main thread while it
    is open, so it must be closed before the rest of the suite calls ``asyncio.run``.
    """
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make tools` (installs Debian's chromium)", pytrace=False)
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only the browser tests need it

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_FLAGS)
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="package")
def reviewer(
    browser: Any, label_studio: LabelStudioServer, shots_dir: Path, docs_shots: Path | None
) -> Iterator[Reviewer]:
    """A reviewer logged in through Label Studio's login form with the harness's user.

    Against a Label Studio given by ``$LABEL_STUDIO_URL``, ``$LABEL_STUDIO_USERNAME`` and
    ``$LABEL_STUDIO_PASSWORD`` name the user (without them the browser tests skip).
    """
    username = label_studio.username or os.environ.get("LABEL_STUDIO_USERNAME", "")
    password = label_studio.password or os.environ.get("LABEL_STUDIO_PASSWORD", "")
    if not password:
        pytest.skip("logging in needs the harness's Label Studio, or LABEL_STUDIO_USERNAME/_PASSWORD")
    person = Reviewer.log_in(browser, label_studio.url, username, password, shots_dir)
    person.docs_shots = docs_shots
    yield person
    person.close()


@pytest.fixture
def screen(reviewer: Reviewer, request: pytest.FixtureRequest) -> Iterator[Reviewer]:
    """The session's reviewer with a clean error list; a screenshot is kept when the test fails."""
    reviewer.errors.clear()
    yield reviewer
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        path = reviewer.shot(f"FAILED-{request.node.name}")
        print(f"screenshot of the failure: {path}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def imported(
    tmp_path_factory: pytest.TempPathFactory,
    kafka_bootstrap: str,
    kafka_admin: KafkaAdminClient,
    label_studio: LabelStudioServer,
) -> dict[str, Imported]:
    """Every shape published to a fresh topic and imported by one real consumer, by shape name."""
    suffix = uuid.uuid4().hex[:8]
    titles = {kind: f"browser-{kind}-{suffix}" for kind in ("prompt", "chat", "custom", "stream")}
    targets: dict[str, dict[str, Any]] = {
        "prompt": {"project_name": titles["prompt"]},
        "chat": {"project_name": titles["chat"], "mode": "chat"},
        "custom": {"project_name": titles["custom"], "project_config": CUSTOM_CONFIG},
        "stream": {"project_name": titles["stream"]},
    }
    shapes = (*SHAPES, *STREAM_SHAPES)
    events = {s.event["run_id"]: event_of(s, targets[s.project]) for s in shapes}  # one per run
    topic = f"test.browser.{suffix}"
    kafka_admin.create_topics(
        {topic: {"num_partitions": 1, "replication_factor": 1, "configs": {}}}, wait_for_metadata=True
    )
    publisher = Publisher(kafka_bootstrap)
    publisher.events(topic, events.values())
    publisher.close()
    client = LabelStudio(base_url=label_studio.url, api_key=label_studio.api_key)  # type: ignore[no-untyped-call]
    expected = {kind: sum(1 for s in shapes if s.project == kind) for kind in titles}
    process = ConsumerProcess.configured(
        tmp_path_factory.mktemp("browser-consumer"),
        bootstrap=kafka_bootstrap,
        label_studio=label_studio,
        topic=topic,
    ).start()
    try:
        process.wait_ready()
        projects = {
            kind: eventually(
                lambda t=title, k=kind: (
                    (p := project_titled(client, t)) and len(tasks_of(client, p.id)) >= expected[k] and p
                ),
                timeout=120,
                message=f"{expected[kind]} tasks in {title}",
            )
            for kind, title in titles.items()
        }
    finally:
        process.kill()
    found: dict[str, Imported] = {}
    for kind, project in projects.items():
        tasks = {(t.data["run_id"], t.data["prompt_index"]): t for t in tasks_of(client, project.id)}
        for shape in (s for s in shapes if s.project == kind):
            task = tasks[(shape.event["run_id"], shape.prompt_index)]
            found[shape.name] = Imported(project.id, task.id, task)
    return found


def export_records(
    label_studio: LabelStudioServer, project_id: int, out: Path, fmt: str = "reward"
) -> list[dict[str, Any]]:
    """``labelstudio-ingest export --format <fmt> --include-metadata`` of the project, as records."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INGEST_", "LABEL_STUDIO_"))}
    env.update(LABEL_STUDIO_URL=label_studio.url, LABEL_STUDIO_API_KEY=label_studio.api_key)
    argv = [
        sys.executable, "-m", "labelstudio_ingest.consumer.cli", "export", "--project", str(project_id),
        "--format", fmt, "--include-metadata", "--quiet", "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]

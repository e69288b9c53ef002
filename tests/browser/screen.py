"""Label Studio's web UI as a reviewer uses it, through Playwright and Debian's chromium.

The browser stays on the machine: every request that is not to the local Label Studio is refused
(and remembered in ``blocked``). Page errors and the app's console errors are collected in
``errors`` so a test can assert the editor ran clean.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Page,
    Response,
    Route,
    expect,
)

CHROMIUM: Final = Path("/usr/bin/chromium")
"""Debian's chromium (``make tools`` installs it); Playwright never downloads a browser here."""

CHROMIUM_FLAGS: Final = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)

VIEWPORT: Final = {"width": 1200, "height": 1000}
"""Tall enough for the data manager to show every row of a test project (it renders visible rows only)."""
LOAD_TIMEOUT_MS: Final = 30_000
expect.set_options(timeout=15_000)  # assertions wait for the editor; Label Studio is slow on 2 cores

KNOWN_MISSING: Final = frozenset({"/heidi-tips"})
"""Paths the web UI of Label Studio 1.23.2 asks its own server for, which the open-source server
does not have (404 on every page): not a fault of a task."""

NO_TASK_LEFT: Final = re.compile(r"/api/dm/actions\?(.*&)?id=next_task(&|$)")
"""The label stream's request for the next task, answered 404 when every task is labeled."""

EDITOR: Final = ".lsf-main-view"
"""The labeling area: the task's input and the controls."""

PHRASE: Final = "[class*=phrase--]"
"""One turn of a Paragraphs dialogue: its speaker and its text (CSS-module class ``phrase--<hash>``)."""

RESPONSE: Final = f"{EDITOR} [data-testid=textarea-control]"
"""The response TextArea (the first one when a config has several)."""


@dataclass
class Reviewer:
    """One logged-in browser context on Label Studio, its page, and what went wrong on it."""

    base_url: str
    context: BrowserContext
    page: Page
    shots: Path
    docs_shots: Path | None = None
    errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    @classmethod
    def log_in(cls, browser: Browser, base_url: str, username: str, password: str, shots: Path) -> Reviewer:
        """A new context that only reaches ``base_url``, logged in through the login form."""
        context = browser.new_context(viewport=VIEWPORT, locale="en-US")  # type: ignore[arg-type]
        page = context.new_page()
        reviewer = cls(base_url, context, page, shots)
        context.route("**/*", reviewer._local_only)
        page.on("pageerror", lambda exc: reviewer.errors.append(f"page error: {exc}"))
        page.on("console", reviewer._console)
        page.on("response", reviewer._response)
        page.set_default_timeout(LOAD_TIMEOUT_MS)
        page.goto(f"{base_url}/user/login/")
        page.fill("input[name=email]", username)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/user/login" not in url)
        return reviewer

    def _local_only(self, route: Route) -> None:
        url = route.request.url
        if url == self.base_url or url.startswith(self.base_url + "/"):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort("blockedbyclient")

    def _console(self, message: ConsoleMessage) -> None:
        # A failed request is reported with its URL by _response (or is one _local_only refused).
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(f"console error: {message.text}")

    def _response(self, response: Response) -> None:
        if response.status >= 400 and not _expected_failure(response):
            self.errors.append(f"HTTP {response.status}: {response.request.method} {response.url}")

    def open_task(self, project_id: int, task_id: int) -> None:
        """The task's labeling screen, opened as a reviewer does: a click on its row in the project's
        data manager, freshly loaded (once the editor has rendered).

        Not by a deep link (``/data?task=ID``) into another project: Label Studio 1.23.2 then
        sometimes builds the editor before the task's predictions have arrived (no prediction,
        nothing pre-filled) or rebuilds it under the reviewer's typing.
        """
        self.page.goto(f"{self.base_url}/projects/{project_id}/data")
        row = self.page.locator(f'[data-testid=table-row]:has(input[aria-label="Select Task {task_id}"])')
        row.locator("> div").first.click()
        expect(self.page).to_have_url(re.compile(rf"[?&]task={task_id}(&|$)"))
        self.wait_for_editor()
        # The data manager builds the editor once from its table row and once more when the task
        # itself has arrived; typing before the second build would be lost.
        self.page.wait_for_load_state("networkidle")

    def open_label_stream(self, project_id: int) -> None:
        """The project's label stream ("Label All Tasks"): one unlabeled task after another."""
        self.page.goto(f"{self.base_url}/projects/{project_id}/data?labeling=1")
        self.wait_for_editor()

    def wait_for_editor(self) -> None:
        self.page.locator(RESPONSE).first.wait_for(state="visible")

    def expect_visible(self, text: str) -> None:
        """``text`` is on screen in the editor (not only in the data manager's table)."""
        expect(self.page.locator(EDITOR).get_by_text(text, exact=False).first).to_be_visible()

    def expect_turn(self, speaker: str, text: str) -> None:
        """A dialogue turn (Paragraphs) on screen: its speaker ``speaker``, its text holding ``text``."""
        turn = self.page.locator(f"{EDITOR} {PHRASE}").filter(has_text=speaker).filter(has_text=text)
        expect(turn.first).to_be_visible()

    def choose(self, choice: str) -> None:
        """Tick the choice ``choice`` (of any Choices; its label also holds a hotkey hint)."""
        self.page.locator(f'{EDITOR} .lsf-choice input[name="{choice}"]').check()

    def enter_number(self, value: int, which: int = 0) -> None:
        """Type ``value`` into the ``which``-th Number field."""
        field_ = self.page.locator(f"{EDITOR} input[type=number]").nth(which)
        field_.fill(str(value))
        field_.press("Enter")
        expect(field_).to_have_value(str(value))

    def response_texts(self) -> list[str]:
        """The texts the response box holds (one per generation), as the reviewer sees them."""
        box = self.page.locator(RESPONSE).first
        return [t.strip() for t in box.locator("[data-testid=htx-textbox-content]").all_inner_texts()]

    def expect_response(self, texts: tuple[str, ...]) -> None:
        """The response box holds exactly ``texts`` (waits for the prediction to be applied)."""
        box = self.page.locator(RESPONSE).first.locator("[data-testid=htx-textbox-content]")
        expect(box).to_have_count(len(texts))
        for i, text in enumerate(texts):
            expect(box.nth(i)).to_have_text(_whitespace_tolerant(text))

    def write_response(self, text: str) -> None:
        """Make ``text`` the response: edit the first answer in place where the config allows it
        (``editable="true"``), else delete the answers and type it; extra answers are deleted."""
        box = self.page.locator(RESPONSE).first
        regions = box.locator("[data-testid=textarea-region]")
        while regions.count() > 1:
            regions.last.locator("[data-testid=htx-textbox-delete-button]").click()
        edit = regions.first.locator("[data-testid=htx-textbox-edit-button]")
        if regions.count() == 1 and edit.count() == 1:
            edit.click()
            field_ = box.locator("[data-testid=htx-textbox-input]")
        else:
            if regions.count() == 1:
                regions.first.locator("[data-testid=htx-textbox-delete-button]").click()
            field_ = box.locator("[data-testid=textarea-input]")
        field_.fill(text)
        field_.press("Enter")
        expect(box.locator("[data-testid=htx-textbox-content]")).to_have_text([_whitespace_tolerant(text)])

    def rate(self, stars: int, which: int = 0) -> None:
        """Click the ``stars``-th star of the ``which``-th Rating."""
        rating = self.page.locator(".ant-rate").nth(which)
        rating.locator("[role=radio]").nth(stars - 1).click()
        expect(rating.locator("[role=radio][aria-checked=true]")).to_have_count(stars)

    def submit(self) -> None:
        """Submit the annotation and wait for Label Studio to store it."""
        with self.page.expect_response(
            lambda r: (
                re.search(r"/api/tasks/\d+/annotations", r.url) is not None and r.request.method == "POST"
            )
        ) as answer:
            self.page.get_by_test_id("bottombar-submit-button").click()
        assert answer.value.ok, f"Label Studio refused the annotation: {answer.value.status}"

    def shot(self, name: str, *, for_docs: bool = False) -> Path:
        """A screenshot of the page in ``shots``; with ``for_docs`` a small copy in ``docs_shots`` too."""
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path))
        if for_docs and self.docs_shots is not None:
            _shrink(path, self.docs_shots / f"{name}.png")
        return path

    def close(self) -> None:
        with contextlib.suppress(Error):  # the browser may be gone already
            self.context.close()


def _expected_failure(response: Response) -> bool:
    """A failed request the UI makes by design (see KNOWN_MISSING and NO_TASK_LEFT)."""
    if urlsplit(response.url).path in KNOWN_MISSING:
        return True
    return response.status == HTTPStatus.NOT_FOUND and NO_TASK_LEFT.search(response.url) is not None


def _whitespace_tolerant(text: str) -> re.Pattern[str]:
    """``text`` with any run of whitespace matching any run (the UI reflows long lines)."""
    parts = [re.escape(p) for p in text.split()]
    return re.compile(r"^\s*" + r"\s+".join(parts) + r"\s*$") if parts else re.compile(r"^\s*$")


def _shrink(source: Path, target: Path) -> None:
    """A smaller copy of a screenshot for the docs: 3/4 size, 64 colours."""
    from PIL import Image  # noqa: PLC0415 - only when docs screenshots are asked for

    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as image:
        small = image.convert("RGB").resize((image.width * 3 // 4, image.height * 3 // 4), Image.LANCZOS)
        small.quantize(colors=64).save(target, optimize=True)

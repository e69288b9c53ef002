"""``labelstudio-ingest backfill``: replay past runs from the input topic into one project, exactly once.

Selects records by publish time (``--since``/``--until``) and runs by what their event says, then
imports them into ``--project`` through the consumer's pipeline with a group and a ledger of the
backfill's own (``backfill_run.py``). Progress: a bar on a terminal, JSON lines otherwise; a
summary at the end. docs/BACKFILL.md is the user's guide.

Exit codes: 0 done; 1 Kafka or Label Studio failed (re-run to resume); 2 bad arguments, settings
or target; 3 done, but Label Studio refused some runs (dead letters); 130 stopped by Ctrl-C or
SIGTERM (re-run the same command to resume).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import httpx
from kafka.errors import KafkaError
from pydantic import ValidationError

from labelstudio_ingest.consumer import logs
from labelstudio_ingest.consumer.backfill import (
    Selection,
    Tally,
    breakdown,
    check_name,
    default_name,
    iso,
    names_for,
    parse_pair,
    parse_rate,
)
from labelstudio_ingest.consumer.connection import ClientErrors, connection_failure
from labelstudio_ingest.consumer.dlq import parse_time
from labelstudio_ingest.consumer.settings import Settings, describe_errors
from labelstudio_ingest.schemas.events import Mode

PROG = "labelstudio-ingest backfill"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DEAD_LETTERS, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
PROGRESS_EVERY_S = 2.0
"""How often a JSON progress line is written."""
SETTINGS_FIELDS = tuple(
    name
    for name in Settings.model_fields
    if not name.startswith(("webhook_", "metrics_", "feedback_", "fault_"))
    and name not in {"ledger_topic", "dlq_topic", "auto_offset_reset"}
)
"""The consumer's settings a backfill takes (its ledger, dead-letter topic and group are its own)."""

AddFlags = Callable[[argparse.ArgumentParser, Iterable[str]], None]
log = logging.getLogger(__name__)


class UsageError(ValueError):
    """A bad argument or target, reported in one line with exit code 2."""


def register(commands: Any, add_flags: AddFlags) -> None:
    """Add ``backfill`` to the top-level sub-commands."""
    parser = commands.add_parser(
        "backfill",
        help="replay past runs from the topic into a project, exactly once",
        description=(
            "Import past runs still held by the input topic into one Label Studio project: selected by "
            "publish time and by what the event says, exactly once per run in that project, also across "
            "a kill and a re-run. Live ingestion is not affected. Exit codes: 0 done, 1 Kafka or Label "
            "Studio failed (re-run to resume), 2 bad arguments or target, 3 done with dead letters, "
            "130 interrupted (re-run to resume)."
        ),
    )
    target = parser.add_argument_group("target")
    target.add_argument(
        "--project", required=True, metavar="ID|TITLE", help="the project to fill: an id, or a title"
    )
    target.add_argument(
        "--config", metavar="FILE", type=Path, help="label config XML for a project created by title"
    )
    target.add_argument(
        "--mode",
        choices=("prompt", "chat", "trajectory"),
        default="prompt",
        help="default config of a new project",
    )
    select = parser.add_argument_group("selection (all given filters must match)")
    select.add_argument(
        "--since", metavar="TIME", help="published at or after TIME: ISO 8601 or 30m, 12h, 7d ago"
    )
    select.add_argument("--until", metavar="TIME", help="published before TIME (same forms)")
    select.add_argument("--service", action="append", default=[], help="source.service (repeat: any of)")
    select.add_argument("--model", action="append", default=[], help="model_name (repeat: any of)")
    select.add_argument("--tag", action="append", default=[], help="a tag the run has (repeat: all of)")
    select.add_argument(
        "--metadata", action="append", default=[], metavar="KEY=VALUE", help="metadata value (repeat: all of)"
    )
    select.add_argument(
        "--kind",
        action="append",
        default=[],
        choices=("prompt", "chat", "trajectory"),
        help="prompt, chat or trajectory",
    )
    select.add_argument("--errors-only", action="store_true", help="only failed runs (with an error)")
    select.add_argument(
        "--from-project",
        action="append",
        default=[],
        metavar="ID|TITLE",
        help="the run's original target: a project id, or a title pattern ('LangChain-*'); repeat: any of",
    )
    select.add_argument(
        "--sample", metavar="SHARE", help="keep a deterministic share of traces, e.g. 0.1 or 10%%"
    )
    run = parser.add_argument_group("running")
    run.add_argument(
        "--name", help="name of this backfill (default: the target and a hash of the selection as written)"
    )
    run.add_argument("--dry-run", action="store_true", help="count what would be imported; write nothing")
    run.add_argument(
        "--restart",
        action="store_true",
        help="read the window again from its start (imported runs stay skipped)",
    )
    run.add_argument(
        "--progress",
        choices=("auto", "bar", "json", "none"),
        default="auto",
        help="a bar (terminal), JSON lines on stderr, or nothing; auto: a bar on a terminal",
    )
    run.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    add_flags(parser, SETTINGS_FIELDS)
    parser.set_defaults(handler=_backfill)


@dataclass(frozen=True, slots=True)
class Request:
    """What the command was asked to do."""

    project: str
    config_xml: str | None
    mode: Mode
    selection: Selection
    window: tuple[str | None, str | None]
    name: str | None
    dry_run: bool
    restart: bool
    progress: str
    json: bool


def parse_request(args: argparse.Namespace, now: datetime | None = None) -> Request:
    """The request of parsed arguments. Raises UsageError with a one-line reason."""
    now = now or datetime.now(UTC)
    try:
        since = parse_time(args.since, now) if args.since else None
        until = parse_time(args.until, now) if args.until else None
        metadata = tuple(parse_pair(text) for text in args.metadata)
        sample = parse_rate(args.sample) if args.sample else 1.0
        name = check_name(args.name) if args.name else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if since is not None and until is not None and until <= since:
        raise UsageError("--until must be later than --since")
    project = args.project.strip()
    if not project:
        raise UsageError("--project needs an id or a title")
    config_xml = None
    if args.config is not None:
        if project.isdigit():
            raise UsageError("--config applies to a project created by title, not to an existing id")
        try:
            config_xml = args.config.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read --config {args.config}: {exc}") from None
    selection = Selection(
        since_ms=int(since.timestamp() * 1000) if since else None,
        until_ms=int(until.timestamp() * 1000) if until else None,
        services=frozenset(args.service),
        models=frozenset(args.model),
        tags=frozenset(args.tag),
        metadata=metadata,
        kinds=frozenset(args.kind),
        errors_only=args.errors_only,
        from_projects=tuple(p.strip() for p in args.from_project if p.strip()),
        sample=sample,
    )
    return Request(
        project=project,
        config_xml=config_xml,
        mode="chat" if args.mode == "chat" else "prompt",
        selection=selection,
        window=(args.since, args.until),
        name=name,
        dry_run=args.dry_run,
        restart=args.restart,
        progress=args.progress,
        json=args.json,
    )


def _backfill(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in vars(args).items() if k in Settings.model_fields}
    try:
        request = parse_request(args)
        settings = Settings(**overrides)
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValidationError as exc:
        print(f"{PROG}: {describe_errors(exc)}", file=sys.stderr)
        return EXIT_USAGE
    if (
        request.config_xml is not None
        and len(request.config_xml.encode()) > settings.max_project_config_bytes
    ):
        print(
            f"{PROG}: --config has {len(request.config_xml.encode())} bytes; "
            f"the limit is {settings.max_project_config_bytes} (INGEST_MAX_PROJECT_CONFIG_BYTES)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    explicit_level = "log_level" in overrides or os.environ.get("INGEST_LOG_LEVEL")
    logs.configure(settings.log_level if explicit_level else "WARNING", secrets=settings.secrets())
    if not explicit_level:  # kafka-python's event-loop timing warnings would break the progress bar
        logging.getLogger("kafka").setLevel(logging.ERROR)
    return Backfill(settings, request).main()


class Backfill:
    """The command: resolve the target, plan, then dry-run or run; prints progress and the summary."""

    def __init__(
        self,
        settings: Settings,
        request: Request,
        out: TextIO = sys.stdout,
        err: TextIO = sys.stderr,
        *,
        signals: bool = True,
    ) -> None:
        """``signals``: Ctrl-C and SIGTERM stop the backfill cleanly (the command; not when embedded)."""
        self.signals = signals
        self.settings = settings
        self.request = request
        self.out = out
        self.err = err
        self.stop = threading.Event()
        self.mask = logs.Masker(settings.secrets())
        self.runner: Any = None
        self._hook: Callable[[httpx.Request], None] = lambda request: None

    def _before_request(self, request: httpx.Request) -> None:
        self._hook(request)

    def say(self, text: str) -> None:
        """A note for the person running the command (stderr)."""
        print(self.mask(text), file=self.err, flush=True)

    def main(self) -> int:
        """Run the command and return its exit code."""
        self._install_signals()
        client_errors = ClientErrors()
        try:
            with client_errors:
                return self._main()
        except UsageError as exc:
            self.say(f"{PROG}: {exc}")
            return EXIT_USAGE
        except KeyboardInterrupt:  # a second Ctrl-C: nothing more is committed
            self.say(f"{PROG}: aborted; run the same command again to resume")
            return EXIT_INTERRUPTED
        except KafkaError as exc:
            self.say(f"{PROG}: {connection_failure(self.settings, exc, client_errors.last)}")
            return EXIT_FAILED
        except Exception as exc:
            log.exception("backfill failed")
            self.say(f"{PROG}: failed: {type(exc).__name__}: {exc}. Re-run the same command to resume.")
            return EXIT_FAILED
        finally:
            if self.runner is not None:
                self.runner.close()

    def _main(self) -> int:
        from labelstudio_ingest.consumer import backfill_run as run  # noqa: PLC0415 - Kafka and the SDK

        s, request = self.settings, self.request
        client = self._client()
        project = self._target(client)
        if project is None:  # a dry run for a title that does not exist yet
            ledger_topic = None
            name = request.name or "(new project)"
        else:
            name = request.name or default_name(project.id, request.selection, request.window)
            ledger_topic = names_for(
                name=name, project_id=project.id, topic=s.topic, group_id=s.group_id
            ).ledger_topic
        count = run.input_partitions(s)
        plan = run.make_plan(s, count, request.selection, self.stop)
        self._report_retention(plan)
        if request.dry_run:
            tally = run.dry_run(s, request.selection, plan, ledger_topic, self.stop)
            self._print_dry_run(tally, project, name)
            return EXIT_INTERRUPTED if self.stop.is_set() else EXIT_OK
        assert project is not None
        names = names_for(name=name, project_id=project.id, topic=s.topic, group_id=s.group_id)
        committed = run.seed_offsets(s, names, plan, restart=request.restart)
        if all(committed[p] >= plan.end[p] for p in plan.partitions):  # an earlier run read it all
            self.say(f"backfill {names.backfill!r}: nothing left to read since its last run")
            return self._finish(Tally(), True, names.backfill, names.dlq_topic)
        reporter = Reporter.choose(request.progress, self.err)
        self.runner = runner = run.Runner(
            s,
            request.selection,
            names,
            project,
            client,
            plan,
            committed,
            self.stop,
            on_progress=reporter.update,
        )
        self._hook = runner.before_request
        runner.build()
        self.say(
            f"backfill {names.backfill!r} into project {project.id} ({project.title!r}): "
            f"{runner.tally.total} records to read; group {names.group_id}, ledger {names.ledger_topic}"
        )
        reporter.start(runner.tally)
        try:
            finished = runner.run()
        finally:
            reporter.close(runner.tally)
        return self._finish(runner.tally, finished, names.backfill, names.dlq_topic)

    # --- Label Studio and the target ----------------------------------------------------------------
    def _client(self) -> Any:
        from label_studio_sdk import LabelStudio  # noqa: PLC0415

        http = httpx.Client(
            timeout=self.settings.import_timeout_s,
            follow_redirects=True,
            event_hooks={"request": [self._before_request]},
        )
        return LabelStudio(  # type: ignore[no-untyped-call]
            base_url=str(self.settings.label_studio_url).rstrip("/"),
            api_key=self.settings.label_studio_api_key.get_secret_value(),
            httpx_client=http,
            max_retries=0,
        )

    def _target(self, client: Any) -> Any:
        """The target project, found or created like an event's target (allowlist, config checks).

        None for a dry run whose title does not exist yet (its config is still checked).
        """
        from labelstudio_ingest.consumer.allowlist import TargetNotAllowedError  # noqa: PLC0415
        from labelstudio_ingest.consumer.configsafety import check_config_safety  # noqa: PLC0415
        from labelstudio_ingest.consumer.labelconfig import (  # noqa: PLC0415
            LabelConfigError,
            normalize_config,
            task_layout,
        )
        from labelstudio_ingest.consumer.projects import ProjectResolver, UnknownProjectError  # noqa: PLC0415
        from labelstudio_ingest.schemas import Target  # noqa: PLC0415

        request, s = self.request, self.settings
        created: list[Any] = []
        try:
            if request.project.isdigit():
                target = Target(project_id=int(request.project))
            else:
                target = Target(
                    project_name=request.project, project_config=request.config_xml, mode=request.mode
                )
        except ValidationError as exc:
            raise UsageError(f"--project: {exc.errors()[0]['msg']}") from None
        resolver = ProjectResolver(
            client,
            allow_create=s.allow_create_projects and not request.dry_run,
            allowlist=s.allowlist,
            cache_ttl_s=0,
            on_created=created.append,
            creation=s.creation_policy,
        )
        try:
            project = resolver.resolve(target)
        except UnknownProjectError as exc:
            if not (request.dry_run and target.project_name is not None and s.allow_create_projects):
                raise UsageError(str(exc)) from None
            if request.config_xml is not None:
                try:
                    config = normalize_config(request.config_xml)
                    check_config_safety(config)
                    task_layout(config)
                except LabelConfigError as config_exc:
                    raise UsageError(f"--config: {config_exc}") from None
            self.say(f"project {target.project_name!r} does not exist; a backfill would create it")
            return None
        except (TargetNotAllowedError, LabelConfigError) as exc:
            raise UsageError(str(exc)) from None
        if created:
            self.say(f"created project {project.id} ({project.title!r})")
        elif request.config_xml is not None:
            self.say(f"project {project.id} ({project.title!r}) exists; it keeps its own label config")
        return project

    # --- output -----------------------------------------------------------------------------------
    def _report_retention(self, plan: Any) -> None:
        since_ms = self.request.selection.since_ms
        if plan.oldest_ms is None:
            self.say(f"the topic {self.settings.topic!r} holds no records")
            return
        if since_ms is not None and since_ms < plan.oldest_ms:
            deleted = f"; {plan.deleted} older records were already deleted" if plan.deleted else ""
            self.say(
                f"note: --since {iso(since_ms)} is older than anything the topic still holds: the oldest "
                f"available run was published at {iso(plan.oldest_ms)}{deleted}. Runs before that cannot "
                "be backfilled (the topic's retention.ms decides how long Kafka keeps them)."
            )

    def _print_dry_run(self, tally: Tally, project: Any, name: str) -> None:
        rows = breakdown(tally.by_kind_service)
        target = None if project is None else {"id": project.id, "title": project.title}
        if self.request.json:
            body = {"dry_run": True, "backfill": name, "project": target, **tally.summary(), "by": rows}
            print(json.dumps(body), file=self.out, flush=True)
            return
        where = "a new project" if project is None else f"project {project.id} ({project.title!r})"
        print(f"dry run of backfill {name!r} into {where}:", file=self.out)
        print(f"{'kind':8} {'service':30} {'runs':>8}", file=self.out)
        for row in rows:
            print(f"{row['kind']:8} {row['service']:30} {row['runs']:>8}", file=self.out)
        print(
            f"would import {tally.matched} runs ({tally.present} already present, {tally.read} records "
            f"read, {tally.invalid} not valid events)",
            file=self.out,
            flush=True,
        )

    def _finish(self, tally: Tally, finished: bool, name: str, dlq_topic: str) -> int:
        state = "done" if finished else "interrupted"
        body = {"backfill": name, "state": state, **tally.summary()}
        if self.request.json:
            print(json.dumps(body), file=self.out, flush=True)
        else:
            print(
                f"backfill {name!r} {state}: read {tally.read}, matched {tally.matched}, imported "
                f"{tally.imported}, already present {tally.present}, dead-lettered {tally.dead_lettered}"
                f" (not valid events: {tally.invalid})",
                file=self.out,
                flush=True,
            )
        if not finished:
            self.say("stopped; run the same command again to resume where it stopped")
            return EXIT_INTERRUPTED
        if tally.dead_lettered:
            self.say(
                f"Label Studio refused {tally.dead_lettered} runs: see "
                f"`labelstudio-ingest dlq inspect --dlq-topic {dlq_topic}`"
            )
            return EXIT_DEAD_LETTERS
        return EXIT_OK

    # --- signals ----------------------------------------------------------------------------------
    def _install_signals(self) -> None:
        if not self.signals or threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        """First signal: stop after the batch in flight. A second Ctrl-C interrupts at once."""
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self.say("stopping after the batch in flight (Ctrl-C again to abort)")
        if self.runner is not None:
            self.runner.request_stop()
        else:
            self.stop.set()


class Reporter:
    """Progress: a bar with rate and ETA on a terminal, JSON lines otherwise, or nothing."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.started = time.monotonic()

    @staticmethod
    def choose(mode: str, stream: TextIO) -> Reporter:
        """The reporter for ``--progress``."""
        if mode == "auto":
            mode = "bar" if stream.isatty() else "json"
        if mode == "bar":
            return BarReporter(stream)
        if mode == "json":
            return JsonReporter(stream)
        return Reporter(stream)

    def start(self, tally: Tally) -> None:
        """Before the first batch."""
        self.started = time.monotonic()

    def update(self, tally: Tally) -> None:
        """After each batch (and each idle poll)."""

    def close(self, tally: Tally) -> None:
        """At the end, interrupted or not."""


class JsonReporter(Reporter):
    """One JSON object per line, at most every :data:`PROGRESS_EVERY_S` seconds, and a last one."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._last = 0.0

    def update(self, tally: Tally) -> None:
        now = time.monotonic()
        if now - self._last >= PROGRESS_EVERY_S:
            self._last = now
            self._write(tally)

    def close(self, tally: Tally) -> None:
        self._write(tally)

    def _write(self, tally: Tally) -> None:
        print(json.dumps(tally.progress(time.monotonic() - self.started)), file=self.stream, flush=True)


class BarReporter(Reporter):
    """A rich progress bar: records read of the window, rate, ETA, and the counts so far."""

    def start(self, tally: Tally) -> None:
        from rich.console import Console  # noqa: PLC0415
        from rich.progress import (  # noqa: PLC0415
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        super().start(tally)
        self._progress = Progress(
            TextColumn("backfill"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} rec/s"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[counts]}"),
            console=Console(file=self.stream),
        )
        self._task = self._progress.add_task("backfill", total=tally.total or None, rate="-", counts="")
        self._progress.start()

    def update(self, tally: Tally) -> None:
        line = tally.progress(time.monotonic() - self.started)
        self._progress.update(
            self._task,
            completed=tally.read,
            rate=f"{line['rate_per_s']:.0f}",
            counts=(
                f"matched {tally.matched} · imported {tally.imported} · present {tally.present}"
                f" · dead {tally.dead_lettered}"
            ),
        )

    def close(self, tally: Tally) -> None:
        self.update(tally)
        self._progress.stop()


__all__ = [
    "EXIT_DEAD_LETTERS",
    "EXIT_INTERRUPTED",
    "Backfill",
    "Request",
    "UsageError",
    "parse_request",
    "register",
]

"""``labelstudio-ingest export``: reviewed tasks of one project as SFT, preference or reward JSON lines.

Pages through the project's tasks (``fields=all``: annotations and predictions) and writes each
record as it goes, to a private temporary file renamed to ``--out`` at the end (a failed export
leaves no half file and no advanced state; see :func:`private_output`). Progress and the final
report go to stderr. Only Label Studio settings are needed (``LABEL_STUDIO_URL``,
``LABEL_STUDIO_API_KEY``), no Kafka.
Exit codes: 0 done (also when records were skipped), 1 Label Studio failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import AliasChoices, Field, HttpUrl, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from labelstudio_ingest.consumer.logs import Masker
from labelstudio_ingest.consumer.private_file import private_output
from labelstudio_ingest.consumer.settings import describe_errors

if TYPE_CHECKING:
    from datetime import datetime

    from labelstudio_ingest.consumer.export import ExportReport, ProjectRef

# The SDK, the label-config parser and the export itself load only when the command runs, so
# that every other sub-command starts without them.

PROG = "labelstudio-ingest export"
EXIT_OK, EXIT_LABEL_STUDIO, EXIT_USAGE = 0, 1, 2
PAGE_SIZE = 100
LS_FIELDS = ("label_studio_url", "label_studio_api_key")
FORMATS = ("sft", "preference", "reward")
"""``export.FORMATS``, repeated here to keep the parser light (a test checks they agree)."""

AddFlags = Callable[[argparse.ArgumentParser, Iterable[str]], None]


class LabelStudioConnection(BaseSettings):
    """How to reach Label Studio: the consumer's variables, nothing about Kafka."""

    model_config = SettingsConfigDict(case_sensitive=False, populate_by_name=True, extra="ignore")

    label_studio_url: HttpUrl = Field(
        HttpUrl("http://localhost:8080"), validation_alias=AliasChoices("LABEL_STUDIO_URL")
    )
    label_studio_api_key: SecretStr = Field(validation_alias=AliasChoices("LABEL_STUDIO_API_KEY"))
    timeout_s: float = Field(60.0, validation_alias=AliasChoices("INGEST_IMPORT_TIMEOUT_S"), gt=0)

    def client(self) -> Any:
        """A Label Studio SDK client (SDK retries on: an export is a batch job)."""
        from label_studio_sdk import LabelStudio  # noqa: PLC0415 - the SDK is slow to import

        return LabelStudio(  # type: ignore[no-untyped-call]
            base_url=str(self.label_studio_url).rstrip("/"),
            api_key=self.label_studio_api_key.get_secret_value(),
            timeout=self.timeout_s,
        )


class UsageError(ValueError):
    """A bad argument, reported in one line with exit code 2."""


def register(commands: Any, add_flags: AddFlags) -> None:
    """Add ``export`` to the top-level sub-commands."""
    parser = commands.add_parser(
        "export",
        help="export reviewed tasks as SFT, preference (DPO) or reward JSON lines",
        description=(
            "Export the reviewers' feedback of one project as training data, one JSON object per line. "
            "See docs/FEEDBACK.md for the formats."
        ),
    )
    parser.add_argument("--project", required=True, metavar="ID_OR_TITLE", help="project id or exact title")
    parser.add_argument("--format", required=True, choices=FORMATS, help="record layout")
    parser.add_argument("--out", required=True, metavar="FILE", help="output file (.jsonl), replaced")
    parser.add_argument(
        "--since",
        metavar="TIME",
        help="only annotations updated at or after TIME: ISO 8601 (UTC if no zone) or 30m, 2h, 7d ago",
    )
    parser.add_argument(
        "--incremental",
        action="store_true",
        help="only annotations not exported by the previous incremental run (state in --state)",
    )
    parser.add_argument(
        "--state",
        metavar="FILE",
        help="state file of --incremental (default: next to --out, one per project and format)",
    )
    parser.add_argument(
        "--textarea", metavar="NAME", help="the TextArea holding the correction (default: the predicted one)"
    )
    parser.add_argument(
        "--include-metadata",
        action="store_true",
        help="add a 'metadata' object per record (run_id, task/annotation ids, reviewer, raw rating)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines (the report still prints)")
    add_flags(parser, LS_FIELDS)
    parser.set_defaults(handler=run)


def default_state_path(out: Path, project_id: int, fmt: str) -> Path:
    """The incremental state file: next to the output, one per project and format."""
    return out.parent / f".labelstudio-export-p{project_id}-{fmt}.state.json"


def resolve_project(client: Any, text: str) -> ProjectRef:
    """The project with this id, or with exactly this title (one of them)."""
    from label_studio_sdk.core.api_error import ApiError  # noqa: PLC0415

    from labelstudio_ingest.consumer.export import ProjectRef  # noqa: PLC0415

    text = text.strip()
    if text.isdigit():
        try:
            found = client.projects.get(id=int(text))
            return ProjectRef(int(found.id), str(found.title or ""))
        except ApiError as exc:
            if exc.status_code != 404:
                raise
    matches = [p for p in client.projects.list(title=text, page_size=100) if p.title == text]
    if not matches:
        raise UsageError(f"--project: no project has the id or title {text!r}")
    if len(matches) > 1:
        ids = ", ".join(str(p.id) for p in sorted(matches, key=lambda p: p.id))
        raise UsageError(f"--project: {len(matches)} projects are titled {text!r} (ids {ids}); give an id")
    return ProjectRef(int(matches[0].id), text)


def run(args: argparse.Namespace) -> int:
    """The ``export`` command."""
    import httpx  # noqa: PLC0415
    from label_studio_sdk.core.api_error import ApiError  # noqa: PLC0415

    from labelstudio_ingest.consumer.export import parse_since  # noqa: PLC0415

    overrides = {k: v for k, v in vars(args).items() if k in LS_FIELDS}
    try:
        conn = LabelStudioConnection(**overrides)
        since = parse_since(args.since) if args.since else None
    except ValidationError as exc:
        print(f"{PROG}: {describe_errors(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:
        print(f"{PROG}: --since: {exc}", file=sys.stderr)
        return EXIT_USAGE
    mask = Masker([conn.label_studio_api_key.get_secret_value()])
    try:
        return _export(args, conn, since)
    except UsageError as exc:
        print(f"{PROG}: {mask(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except ApiError as exc:
        print(mask(f"{PROG}: Label Studio answered HTTP {exc.status_code}: {exc.body}"), file=sys.stderr)
        return EXIT_LABEL_STUDIO
    except (httpx.HTTPError, OSError) as exc:
        print(f"{PROG}: Label Studio or file error: {mask(str(exc))}", file=sys.stderr)
        return EXIT_LABEL_STUDIO


def _export(args: argparse.Namespace, conn: LabelStudioConnection, since: datetime | None) -> int:
    from labelstudio_ingest.consumer.annotations import feedback_config  # noqa: PLC0415
    from labelstudio_ingest.consumer.export import (  # noqa: PLC0415
        ExportState,
        Format,
        effective_since,
        export,
        updated_since_query,
    )
    from labelstudio_ingest.consumer.labelconfig import LabelConfigError  # noqa: PLC0415

    client = conn.client()
    project = resolve_project(client, args.project)
    full = client.projects.get(id=project.id)
    try:
        config = feedback_config(str(full.label_config or ""), args.textarea)
    except LabelConfigError as exc:
        raise UsageError(f"project {project.id}: {exc}") from None
    fmt: Format = args.format
    out = Path(args.out)
    state_path: Path | None = None
    state: ExportState | None = None
    if args.incremental:
        state_path = Path(args.state) if args.state else default_state_path(out, project.id, fmt)
        try:
            state = ExportState.load(state_path, project.id, fmt)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    elif args.state:
        raise UsageError("--state goes with --incremental")

    total = getattr(full, "task_number", None)
    of_total = f"/{total}" if isinstance(total, int) else ""

    def progress(report: ExportReport) -> None:
        if not args.quiet:
            print(f"export: {report.tasks}{of_total} tasks read, {report.exported} exported", file=sys.stderr)

    floor = effective_since(since, state)
    query = updated_since_query(floor) if floor is not None else None
    tasks = client.tasks.list(project=project.id, fields="all", page_size=PAGE_SIZE, query=query)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # so that the partial file is removed
    with private_output(out) as stream:
        report = export(
            tasks,
            stream,
            fmt=fmt,
            config=config,
            project=project,
            include_metadata=args.include_metadata,
            since=since,
            state=state,
            progress=progress,
        )
    if state is not None and state_path is not None:
        state.save(state_path)
    print(
        f"export of project {project.id} ({project.title}) as {fmt} to {out}: {report.summary()}",
        file=sys.stderr,
    )
    return EXIT_OK


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


__all__ = [
    "LabelStudioConnection",
    "default_state_path",
    "register",
    "resolve_project",
    "run",
]

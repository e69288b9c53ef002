"""Label Studio webhooks in, feedback events out: ``POST /webhooks/label-studio`` on its own port.

Label Studio calls the endpoint on ``ANNOTATION_CREATED`` / ``ANNOTATION_UPDATED`` with a shared
secret in the :data:`SECRET_HEADER` header. The endpoint trusts only the ids in the payload: it
fetches the task (with its annotations) and the project's config through the SDK, reads the
annotation (consumer/annotations.py), and publishes a :class:`FeedbackEvent` keyed by ``run_id``,
answering 200 only after the broker acknowledged it (503 otherwise, so a caller that retries can).

Answers: 401 missing or wrong secret, 400 not JSON or missing ids, 413 body too large, 404 any
other path, 405 any other method, 408 a body not sent within the request deadline, 503 Label
Studio or the broker unavailable or too many requests at once, 500 a bug; 200 with
``{"status": "published" | "duplicate" | "skipped" | "ignored", ...}`` otherwise. Each annotation
version is published once per process (a bounded memory of versions, plus deterministic event ids
so readers can deduplicate across replicas; see docs/FEEDBACK.md). No answer carries exception
text: what failed is in the (masked) log, the answer names only a reason.

This is a separate server from /metrics (consumer/health.py): the metrics port serves nothing else.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, Protocol

from labelstudio_ingest.consumer.http_server import BackgroundHTTPServer
from labelstudio_ingest.schemas import (
    FeedbackEvent,
    FeedbackProject,
    FeedbackRating,
    encode_feedback,
    feedback_event_id,
    feedback_headers,
    feedback_key,
)

if TYPE_CHECKING:
    from labelstudio_ingest.consumer.annotations import FeedbackConfig, SkipReason
    from labelstudio_ingest.consumer.labelconfig import LabelConfigError
    from labelstudio_ingest.consumer.metrics import Metrics

# consumer/annotations.py (and with it the Label Studio SDK) loads when the endpoint starts, not
# when the command line is parsed.

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/label-studio"
SECRET_HEADER = "X-Ingest-Webhook-Secret"
ACTIONS = {"ANNOTATION_CREATED": "created", "ANNOTATION_UPDATED": "updated"}
DEDUP_VERSIONS = 100_000
"""Annotation versions remembered as published (per process)."""
PROJECT_CACHE_S = 60.0
REQUEST_TIMEOUT_S = 10.0
"""Default deadline to receive one request (Label Studio sends a small body at once)."""
MAX_CONNECTIONS = 16
"""Default cap on requests served at once; more are answered 503 (Label Studio sends one per save)."""


class Unavailable(Exception):
    """Label Studio or the broker failed; the request is answered 503."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class TaskReader(Protocol):
    """Reads tasks and projects from Label Studio (the SDK in production)."""

    def task(self, task_id: int) -> Mapping[str, Any] | None:
        """The task with its annotations and predictions; None when it does not exist."""

    def project(self, project_id: int) -> tuple[str, str] | None:
        """(title, label config) of the project; None when it does not exist."""


class FeedbackSink(Protocol):
    """Publishes one record and returns once the broker acknowledged it (raises otherwise)."""

    def publish(self, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        """Send and wait for the acknowledgement."""


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer."""

    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


class _VersionMemory:
    """Annotation versions published, bounded (oldest forgotten first), with in-flight tracking.

    Two deliveries of one version arriving together: the second waits for the first's outcome, so
    a version is published once, and published again only if the first attempt failed.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._done: OrderedDict[uuid.UUID, None] = OrderedDict()
        self._busy: set[uuid.UUID] = set()
        self._cond = threading.Condition()

    def claim(self, key: uuid.UUID) -> bool:
        """True if the caller must publish ``key`` (then call :meth:`release`); False if done already."""
        with self._cond:
            while key in self._busy:
                self._cond.wait()
            if key in self._done:
                self._done.move_to_end(key)
                return False
            self._busy.add(key)
            return True

    def release(self, key: uuid.UUID, *, published: bool) -> None:
        """End a claim; ``published`` records the version as done."""
        with self._cond:
            self._busy.discard(key)
            if published:
                self._done[key] = None
                while len(self._done) > self._size:
                    self._done.popitem(last=False)
            self._cond.notify_all()


class FeedbackHook:
    """The endpoint's logic, independent of the HTTP server (unit-tested with fakes)."""

    def __init__(
        self,
        *,
        secret: str,
        reader: TaskReader,
        sink: FeedbackSink,
        metrics: Metrics,
        textarea: str | None = None,
        max_body_bytes: int = 4 * 2**20,
        dedup_versions: int = DEDUP_VERSIONS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not secret:
            raise ValueError("the webhook secret is empty")
        self._secret = secret.encode("utf-8")
        self._reader = reader
        self._sink = sink
        self._metrics = metrics
        self._textarea = textarea
        self.max_body_bytes = max_body_bytes
        self._versions = _VersionMemory(dedup_versions)
        self._clock = clock
        self._projects: dict[int, tuple[float, FeedbackProject, FeedbackConfig | LabelConfigError]] = {}
        self._projects_lock = threading.Lock()

    # --- request --------------------------------------------------------------------------------
    def route(self, method: str, path: str) -> Reply | None:
        """404/405 for anything but ``POST`` to :data:`WEBHOOK_PATH`; None when the route is right."""
        if path.split("?", 1)[0] != WEBHOOK_PATH:
            return self._refuse(404, "not_found", f"nothing here; Label Studio webhooks go to {WEBHOOK_PATH}")
        if method != "POST":
            return self._refuse(405, "method", "only POST", {"Allow": "POST"})
        return None

    def authorized(self, presented: str | None) -> Reply | None:
        """401 unless ``presented`` equals the secret (constant-time); None when it does."""
        if presented is None:
            return self._refuse(401, "unauthorized", f"missing {SECRET_HEADER} header")
        if not hmac.compare_digest(presented.encode("utf-8"), self._secret):
            return self._refuse(401, "unauthorized", f"wrong {SECRET_HEADER}")
        return None

    def too_large(self, length: int | None) -> Reply | None:
        """413 for a body over the cap, 411 without a length; None when acceptable."""
        if length is None:
            return self._refuse(411, "no_length", "a Content-Length header is required")
        if length > self.max_body_bytes:
            return self._refuse(
                413, "too_large", f"the body is {length} bytes; the limit is {self.max_body_bytes}"
            )
        return None

    def handle(self, body: bytes) -> Reply:
        """An authenticated, size-checked webhook body → a reply (publishing the feedback first)."""
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return self._refuse(400, "not_json", "the body is not JSON")
        if not isinstance(payload, dict) or not isinstance(payload.get("action"), str):
            return self._refuse(400, "missing_fields", "the body must be a JSON object with an 'action'")
        action = payload["action"]
        self._metrics.webhooks_received.labels(action=action if action in ACTIONS else "other").inc()
        if action not in ACTIONS:
            return self._skip("ignored_action", status="ignored", action=action)
        ids = _ids(payload)
        if ids is None:
            return self._refuse(
                400, "missing_fields", "annotation.id and the task id (annotation.task) are required"
            )
        annotation_id, task_id = ids
        try:
            return self._publish(ACTIONS[action], annotation_id, task_id)
        except Unavailable as exc:
            log.warning("feedback not published", extra={"reason": exc.reason, "error": str(exc)})
            what = "Label Studio" if exc.reason == "label_studio_unavailable" else "the broker"
            return self._refuse(503, exc.reason, f"{what} did not answer; see the endpoint's log")
        except Exception:  # a bug or data we did not foresee: answer, log, keep serving
            log.exception(
                "feedback not published", extra={"annotation_id": annotation_id, "task_id": task_id}
            )
            return self._refuse(500, "internal", "the endpoint failed; see its log")

    # --- feedback --------------------------------------------------------------------------------
    def _publish(self, action: str, annotation_id: int, task_id: int) -> Reply:
        from labelstudio_ingest.consumer.annotations import SkipReason  # noqa: PLC0415
        from labelstudio_ingest.consumer.labelconfig import LabelConfigError  # noqa: PLC0415

        task = self._call("label_studio_unavailable", lambda: self._reader.task(task_id))
        if task is None:
            return self._skip("task_gone", task_id=task_id)
        annotation = next((a for a in task.get("annotations") or () if a.get("id") == annotation_id), None)
        if annotation is None:
            return self._skip("annotation_gone", annotation_id=annotation_id)
        run_id = _run_id(task)
        if run_id is None:
            return self._skip("not_ingested", task_id=task_id)
        project_id = task.get("project")
        if not isinstance(project_id, int):
            return self._refuse(400, "missing_fields", f"task {task_id} names no project")
        known = self._project(project_id)
        if known is None:
            return self._skip("task_gone", task_id=task_id)
        project, config = known
        if isinstance(config, LabelConfigError):
            return self._skip("unusable_config", project_id=project_id, detail=str(config))
        event = build_event(action, task, annotation, project, config, run_id, self._clock())
        if isinstance(event, SkipReason):
            return self._skip(event.value, annotation_id=annotation_id)
        if not self._versions.claim(event.event_id):
            return self._skip("duplicate", status="duplicate", event_id=str(event.event_id))
        published = False
        try:
            self._call(
                "broker_unavailable",
                lambda: self._sink.publish(
                    feedback_key(event), encode_feedback(event), feedback_headers(event)
                ),
            )
            published = True
        finally:
            self._versions.release(event.event_id, published=published)
        self._metrics.feedback_published.inc()
        log.info(
            "published feedback",
            extra={
                "run_id": str(run_id),
                "annotation_id": annotation_id,
                "action": action,
                "event_id": str(event.event_id),
            },
        )
        return Reply(200, {"status": "published", "event_id": str(event.event_id), "run_id": str(run_id)})

    def _project(self, project_id: int) -> tuple[FeedbackProject, FeedbackConfig | LabelConfigError] | None:
        from labelstudio_ingest.consumer.annotations import feedback_config  # noqa: PLC0415
        from labelstudio_ingest.consumer.labelconfig import LabelConfigError  # noqa: PLC0415

        now = time.monotonic()
        with self._projects_lock:
            cached = self._projects.get(project_id)
        if cached is not None and now - cached[0] < PROJECT_CACHE_S:
            return cached[1], cached[2]
        found = self._call("label_studio_unavailable", lambda: self._reader.project(project_id))
        if found is None:
            return None
        title, config_xml = found
        config: FeedbackConfig | LabelConfigError
        try:
            config = feedback_config(config_xml, self._textarea)
        except LabelConfigError as exc:
            config = exc
        project = FeedbackProject(id=project_id, title=title)
        with self._projects_lock:
            self._projects[project_id] = (now, project, config)
        return project, config

    def _call(self, reason: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception as exc:
            raise Unavailable(reason, f"{type(exc).__name__}: {exc}") from exc

    def _refuse(
        self, status: int, reason: str, detail: str, headers: Mapping[str, str] | None = None
    ) -> Reply:
        self._metrics.webhooks_refused.labels(reason=reason).inc()
        return Reply(status, {"status": "refused", "reason": reason, "detail": detail}, headers or {})

    def busy(self) -> None:
        """Count a connection turned away because the endpoint served its most at once."""
        self._metrics.webhooks_refused.labels(reason="busy").inc()

    def timed_out(self) -> Reply:
        """408 for a body that did not arrive within the request deadline."""
        return self._refuse(408, "timeout", "the request was not received in time")

    def _skip(self, reason: str, *, status: str = "skipped", **details: Any) -> Reply:
        self._metrics.feedback_skipped.labels(reason=reason).inc()
        return Reply(200, {"status": status, "reason": reason, **details})


def build_event(  # noqa: PLR0917 (every part of the event)
    action: str,
    task: Mapping[str, Any],
    annotation: Mapping[str, Any],
    project: FeedbackProject,
    config: FeedbackConfig,
    run_id: uuid.UUID,
    now: datetime,
) -> FeedbackEvent | SkipReason:
    """The feedback event of one annotation of one of our tasks, or why there is none (empty)."""
    from labelstudio_ingest.consumer.annotations import (  # noqa: PLC0415
        Feedback,
        SkipReason,
        model_response,
        read_annotation,
    )

    read = read_annotation(annotation, config)
    cancelled = read is SkipReason.CANCELLED
    if isinstance(read, SkipReason) and not cancelled:
        return read
    feedback = read if isinstance(read, Feedback) else None
    annotated_at = (feedback.time if feedback else None) or _time(annotation.get("updated_at"))
    if annotated_at is None or annotated_at.tzinfo is None:
        annotated_at = now
    model = model_response(task, config)
    text = feedback.text if feedback else None
    ratings = [
        FeedbackRating(name=r.name, value=r.scaled, raw=r.raw, max=r.max)
        for r in (feedback.ratings if feedback else ())
    ]
    data = task.get("data") or {}
    index = data.get("prompt_index")
    return FeedbackEvent(
        event_id=feedback_event_id(int(annotation["id"]), annotated_at),
        event_time=now,
        action="created" if action == "created" else "updated",
        run_id=run_id,
        prompt_index=index if isinstance(index, int) else None,
        project=project,
        task_id=int(task["id"]),
        annotation_id=int(annotation["id"]),
        annotated_at=annotated_at,
        reviewer_id=feedback.reviewer_id if feedback else None,
        cancelled=cancelled,
        corrected_text=text,
        model_response=model,
        changed=text is not None and model is not None and text.strip() != model.strip(),
        rating=ratings[0] if ratings else None,
        ratings=ratings,
        choices=dict(feedback.choices) if feedback else {},
        lead_time_s=feedback.lead_time_s if feedback and (feedback.lead_time_s or 0) >= 0 else None,
        textarea=config.textarea,
    )


def _ids(payload: Mapping[str, Any]) -> tuple[int, int] | None:
    annotation = payload.get("annotation")
    if not isinstance(annotation, Mapping):
        return None
    annotation_id = annotation.get("id")
    task_id = annotation.get("task")
    task = payload.get("task")
    if not isinstance(task_id, int) and isinstance(task, Mapping):
        task_id = task.get("id")
    if isinstance(task_id, Mapping):
        task_id = task_id.get("id")
    if not isinstance(annotation_id, int) or not isinstance(task_id, int):
        return None
    if isinstance(annotation_id, bool) or isinstance(task_id, bool):
        return None
    return annotation_id, task_id


def _run_id(task: Mapping[str, Any]) -> uuid.UUID | None:
    value = (task.get("data") or {}).get("run_id")
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _time(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


# --- HTTP ---------------------------------------------------------------------------------------------


class WebhookServer(BackgroundHTTPServer):
    """Serves :class:`FeedbackHook` on ``host:port`` in a daemon thread until :meth:`stop`, with
    ``request_timeout_s`` to receive each request and at most ``max_connections`` at once
    (consumer/http_server.py)."""

    def __init__(
        self,
        host: str,
        port: int,
        hook: FeedbackHook,
        *,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        super().__init__(
            host,
            port,
            _handler(hook),
            name="webhook-http",
            request_timeout_s=request_timeout_s,
            max_connections=max_connections,
            on_busy=hook.busy,
        )


def _handler(hook: FeedbackHook) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "labelstudio-ingest"
        sys_version = ""  # no Python version in the Server header
        protocol_version = "HTTP/1.1"
        error_content_type = "application/json"
        error_message_format = '{"status": "refused", "reason": "bad_request", "code": %(code)d}'
        # (malformed request lines and headers: the default page would echo the client's text)

        def do_POST(self) -> None:
            self._serve("POST")

        def do_GET(self) -> None:
            self._serve("GET")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def do_PATCH(self) -> None:
            self._serve("PATCH")

        def _serve(self, method: str) -> None:
            reply = (
                hook.route(method, self.path)
                or hook.authorized(self.headers.get(SECRET_HEADER))
                or hook.too_large(_length(self.headers.get("Content-Length")))
            )
            if reply is None:
                length = _length(self.headers.get("Content-Length")) or 0
                try:
                    body = self.rfile.read(length)
                except TimeoutError:
                    self.close_connection = True
                    reply = hook.timed_out()
                else:
                    reply = hook.handle(body)
            else:
                self.close_connection = True  # the body (if any) was not read
            answer = json.dumps(reply.body).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            try:
                self.wfile.write(answer)
            except (
                BrokenPipeError,
                ConnectionResetError,
                TimeoutError,
            ):  # the caller gave up (Label Studio waits 1 s)
                log.info("webhook caller left before the answer", extra={"status": reply.status})

        def log_message(self, format: str, *args: Any) -> None:
            """Outcomes are logged by the hook and counted in metrics; no access log (no secrets either)."""

    return Handler


def _length(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        return None
    return length if length >= 0 else None


__all__ = [
    "ACTIONS",
    "SECRET_HEADER",
    "WEBHOOK_PATH",
    "FeedbackHook",
    "FeedbackSink",
    "Reply",
    "TaskReader",
    "Unavailable",
    "WebhookServer",
    "build_event",
]

"""``labelstudio-ingest webhooks serve|install`` and the production wiring of the webhook endpoint.

``serve`` runs only the endpoint (plus /metrics and /healthz on the metrics port); ``consume`` runs
it too when ``INGEST_WEBHOOK_PORT`` is set (consumer/app.py calls :func:`start_endpoint`).
``install`` registers (or updates) the project's webhook in Label Studio: one webhook per project
and URL, actions ``ANNOTATION_CREATED`` and ``ANNOTATION_UPDATED``, the secret as a header.
Exit codes: 0 done, 1 Label Studio or Kafka failed, 2 bad arguments or settings.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import SettingsConfigDict

from labelstudio_ingest.consumer import logs
from labelstudio_ingest.consumer.export_cli import LabelStudioConnection, UsageError, resolve_project
from labelstudio_ingest.consumer.settings import Settings, describe_errors
from labelstudio_ingest.consumer.webhooks import (
    ACTIONS,
    SECRET_HEADER,
    WEBHOOK_PATH,
    FeedbackHook,
    WebhookServer,
)

if TYPE_CHECKING:
    from labelstudio_ingest.consumer.metrics import Metrics

log = logging.getLogger(__name__)

PROG = "labelstudio-ingest webhooks"
EXIT_OK, EXIT_SERVICE, EXIT_USAGE = 0, 1, 2
PUBLISH_TIMEOUT_S = 10.0
SERVE_FIELDS = tuple(
    f
    for f in Settings.model_fields
    if f
    in {
        "bootstrap_servers",
        "security_protocol",
        "ssl_cafile",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_password",
        "ssl_check_hostname",
        "sasl_mechanism",
        "sasl_username",
        "sasl_password",
        "label_studio_url",
        "label_studio_api_key",
        "import_timeout_s",
        "create_topics",
        "metrics_host",
        "metrics_port",
        "log_level",
        "webhook_port",
        "webhook_host",
        "webhook_secret",
        "webhook_max_body_bytes",
        "webhook_request_timeout_s",
        "webhook_max_connections",
        "feedback_topic",
        "feedback_textarea",
    }
)
INSTALL_FIELDS = ("label_studio_url", "label_studio_api_key", "webhook_secret")

AddFlags = Callable[[argparse.ArgumentParser, Iterable[str]], None]


# --- production adapters -------------------------------------------------------------------------------


class SdkTaskReader:
    """Tasks and projects through the Label Studio SDK (its own client: thread-safe httpx, no hooks)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def task(self, task_id: int) -> Mapping[str, Any] | None:
        from label_studio_sdk.core.api_error import ApiError  # noqa: PLC0415

        from labelstudio_ingest.consumer.export import as_dict  # noqa: PLC0415

        try:
            return as_dict(self._client.tasks.get(id=str(task_id)))
        except ApiError as exc:
            if exc.status_code == 404:
                return None
            raise

    def project(self, project_id: int) -> tuple[str, str] | None:
        from label_studio_sdk.core.api_error import ApiError  # noqa: PLC0415

        try:
            found = self._client.projects.get(id=project_id)
        except ApiError as exc:
            if exc.status_code == 404:
                return None
            raise
        return str(found.title or ""), str(found.label_config or "")


class KafkaFeedbackSink:
    """Publishes to the feedback topic and waits for the broker's acknowledgement."""

    def __init__(self, producer: Any, topic: str, timeout_s: float = PUBLISH_TIMEOUT_S) -> None:
        self._producer = producer
        self._topic = topic
        self._timeout_s = timeout_s

    def publish(self, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        self._producer.send(self._topic, key=key, value=value, headers=headers).get(timeout=self._timeout_s)

    def close(self) -> None:
        self._producer.close(timeout=5)


@dataclass
class Endpoint:
    """A running webhook endpoint and what to close with it."""

    server: WebhookServer
    sink: KafkaFeedbackSink

    @property
    def port(self) -> int:
        return self.server.port

    def stop(self) -> None:
        self.server.stop()
        self.sink.close()


def ensure_feedback_topic(settings: Settings, partitions: int) -> None:
    """Create the feedback topic when it is missing and ``INGEST_CREATE_TOPICS`` allows (else fail)."""
    from kafka import KafkaAdminClient  # noqa: PLC0415
    from kafka.admin import NewTopic  # noqa: PLC0415
    from kafka.errors import TopicAlreadyExistsError  # noqa: PLC0415

    from labelstudio_ingest.consumer.topics import TopicError, partition_count  # noqa: PLC0415

    admin = KafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers.split(","), **settings.kafka_security()
    )
    try:
        if partition_count(admin, settings.feedback_topic) is not None:
            return
        if not settings.create_topics:
            raise TopicError(
                f"topic {settings.feedback_topic!r} does not exist and INGEST_CREATE_TOPICS is false"
            )
        try:
            admin.create_topics([NewTopic(settings.feedback_topic, partitions, -1)])
            log.info("created topic", extra={"topic": settings.feedback_topic, "partitions": partitions})
        except TopicAlreadyExistsError:
            pass
    finally:
        admin.close()


def start_endpoint(settings: Settings, metrics: Metrics, partitions: int = 3) -> Endpoint:
    """Start the webhook endpoint of ``settings`` (``webhook_port`` must be set)."""
    import httpx  # noqa: PLC0415
    from kafka import KafkaProducer  # noqa: PLC0415
    from label_studio_sdk import LabelStudio  # noqa: PLC0415

    assert settings.webhook_port is not None
    assert settings.webhook_secret is not None
    ensure_feedback_topic(settings, partitions)
    producer = KafkaProducer(
        bootstrap_servers=settings.bootstrap_servers.split(","),
        client_id=f"labelstudio-ingest-feedback-{os.getpid()}",
        acks="all",
        enable_idempotence=True,
        linger_ms=0,
        **settings.kafka_security(),
    )
    sink = KafkaFeedbackSink(producer, settings.feedback_topic)
    client = LabelStudio(  # type: ignore[no-untyped-call]
        base_url=str(settings.label_studio_url).rstrip("/"),
        api_key=settings.label_studio_api_key.get_secret_value(),
        httpx_client=httpx.Client(timeout=settings.import_timeout_s, follow_redirects=True),
        max_retries=0,  # Label Studio's webhook call has a short timeout; fail fast with 503
    )
    hook = FeedbackHook(
        secret=settings.webhook_secret.get_secret_value(),
        reader=SdkTaskReader(client),
        sink=sink,
        metrics=metrics,
        textarea=settings.feedback_textarea,
        max_body_bytes=settings.webhook_max_body_bytes,
    )
    server = WebhookServer(
        settings.webhook_host,
        settings.webhook_port,
        hook,
        request_timeout_s=settings.webhook_request_timeout_s,
        max_connections=settings.webhook_max_connections,
    )
    server.start()
    log.info(
        "serving Label Studio webhooks",
        extra={"port": server.port, "path": WEBHOOK_PATH, "topic": settings.feedback_topic},
    )
    return Endpoint(server, sink)


# --- commands ------------------------------------------------------------------------------------------


class _InstallSettings(LabelStudioConnection):
    model_config = SettingsConfigDict(case_sensitive=False, populate_by_name=True, extra="ignore")

    webhook_secret: SecretStr = Field(validation_alias=AliasChoices("INGEST_WEBHOOK_SECRET"))


def register(commands: Any, add_flags: AddFlags) -> None:
    """Add ``webhooks serve`` and ``webhooks install``."""
    group = commands.add_parser(
        "webhooks",
        help="live feedback: serve the Label Studio webhook endpoint, or install the webhook",
        description="Publish reviewers' annotations as feedback events (docs/FEEDBACK.md).",
    )
    actions = group.add_subparsers(dest="webhooks_command", required=True, metavar="ACTION")
    serve = actions.add_parser(
        "serve",
        help="run only the webhook endpoint (consume runs it too when INGEST_WEBHOOK_PORT is set)",
        description="Serve the webhook endpoint on INGEST_WEBHOOK_PORT, /metrics on INGEST_METRICS_PORT.",
    )
    add_flags(serve, SERVE_FIELDS)
    serve.set_defaults(handler=_serve)
    install = actions.add_parser(
        "install",
        help="register the webhook of a project in Label Studio (idempotent)",
        description=(
            "Create or update the project's webhook for ANNOTATION_CREATED and ANNOTATION_UPDATED, "
            f"sending the secret in the {SECRET_HEADER} header. Re-running it changes nothing."
        ),
    )
    install.add_argument("--project", required=True, metavar="ID_OR_TITLE", help="project id or exact title")
    install.add_argument(
        "--url",
        required=True,
        metavar="URL",
        help=f"the endpoint as Label Studio reaches it, e.g. http://ingest:9465{WEBHOOK_PATH}",
    )
    add_flags(install, INSTALL_FIELDS)
    install.set_defaults(handler=_install)


def install_webhook(client: Any, project_id: int, url: str, secret: str) -> tuple[str, int]:
    """Create the project's webhook, or update ours (the one sending :data:`SECRET_HEADER`).

    Returns (``created`` | ``updated`` | ``unchanged``, webhook id). Keyed by the header rather than
    the URL, so moving the endpoint updates the webhook instead of adding a second one.
    """
    actions = sorted(ACTIONS)
    headers = {SECRET_HEADER: secret}
    ours = [
        w
        for w in client.webhooks.list(project=str(project_id))
        if w.project == project_id and SECRET_HEADER in (w.headers or {})
    ]
    if ours:
        hook = min(ours, key=lambda w: w.id)
        same = (
            hook.url == url
            and sorted(hook.actions or []) == actions
            and (hook.headers or {}) == headers
            and hook.is_active
            and hook.send_payload
            and not hook.send_for_all_actions
        )
        if same:
            return "unchanged", int(hook.id)
        client.webhooks.update(
            id=hook.id,
            url=url,
            actions=actions,
            headers=headers,
            is_active=True,
            send_payload=True,
            send_for_all_actions=False,
        )
        return "updated", int(hook.id)
    created = client.webhooks.create(
        url=url,
        project=project_id,
        actions=actions,
        headers=headers,
        is_active=True,
        send_payload=True,
        send_for_all_actions=False,
    )
    return "created", int(created.id)


def _install(args: argparse.Namespace) -> int:
    import httpx  # noqa: PLC0415
    from label_studio_sdk.core.api_error import ApiError  # noqa: PLC0415

    overrides = {k: v for k, v in vars(args).items() if k in INSTALL_FIELDS}
    try:
        conn = _InstallSettings(**overrides)
    except ValidationError as exc:
        print(f"{PROG} install: {describe_errors(exc)}", file=sys.stderr)
        return EXIT_USAGE
    secret = conn.webhook_secret.get_secret_value()
    mask = logs.Masker([secret, conn.label_studio_api_key.get_secret_value()])
    if not args.url.startswith(("http://", "https://")):
        print(f"{PROG} install: --url must be an http(s) URL, not {args.url!r}", file=sys.stderr)
        return EXIT_USAGE
    client = conn.client()
    try:
        project = resolve_project(client, args.project)
        outcome, hook_id = install_webhook(client, project.id, args.url, secret)
    except UsageError as exc:
        print(f"{PROG} install: {mask(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except ApiError as exc:
        body = mask(str(exc.body))
        print(f"{PROG} install: Label Studio answered HTTP {exc.status_code}: {body}", file=sys.stderr)
        return EXIT_SERVICE
    except httpx.HTTPError as exc:
        print(f"{PROG} install: Label Studio unreachable: {mask(str(exc))}", file=sys.stderr)
        return EXIT_SERVICE
    print(f"webhook {hook_id} of project {project.id} ({project.title}) {outcome}: {args.url}")
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    from labelstudio_ingest.consumer.health import HealthServer  # noqa: PLC0415
    from labelstudio_ingest.consumer.metrics import Metrics  # noqa: PLC0415

    overrides = {k: v for k, v in vars(args).items() if k in Settings.model_fields}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        print(f"{PROG} serve: {describe_errors(exc)}", file=sys.stderr)
        return EXIT_USAGE
    if settings.webhook_port is None:
        print(f"{PROG} serve: set INGEST_WEBHOOK_PORT (--webhook-port)", file=sys.stderr)
        return EXIT_USAGE
    logs.configure(settings.log_level, secrets=settings.secrets())
    metrics = Metrics()
    stop = threading.Event()
    health = HealthServer(settings.metrics_host, settings.metrics_port, metrics.registry, lambda: (True, {}))
    health.start()
    try:
        endpoint = start_endpoint(settings, metrics)
    except Exception as exc:
        log.exception("start-up failed")
        print(f"{PROG} serve: start-up failed: {logs.Masker(settings.secrets())(str(exc))}", file=sys.stderr)
        health.stop()
        return EXIT_SERVICE
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    endpoint.stop()
    health.stop()
    log.info("stopped")
    return EXIT_OK


__all__ = [
    "Endpoint",
    "KafkaFeedbackSink",
    "SdkTaskReader",
    "ensure_feedback_topic",
    "install_webhook",
    "register",
    "start_endpoint",
]

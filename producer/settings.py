"""Where the producer's options come from when the caller leaves them out: the environment, then defaults.

The producer extra has no pydantic-settings on purpose (it ships inside someone else's app), so this
reads ``os.environ`` directly. TLS and SASL use the consumer's variable names (``KAFKA_SECURITY_PROTOCOL``,
``KAFKA_SSL_*``, ``KAFKA_SASL_*``; see :data:`ENV_SECURITY` and docs/KAFKA_SECURITY.md), so one Secret
can configure both sides.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from labelstudio_ingest.producer.pipe import plain_data
from labelstudio_ingest.schemas import DEFAULT_TOPIC

ENV_PROJECT_ID = "LABEL_STUDIO_PROJECT_ID"
ENV_BOOTSTRAP_SERVERS = "KAFKA_BOOTSTRAP_SERVERS"
ENV_TOPIC = "INGEST_TOPIC"
ENV_SERVICE_NAMES = ("OTEL_SERVICE_NAME", "INGEST_SERVICE_NAME")
ENV_SENDER = "INGEST_PRODUCER_SENDER"
ENV_ENABLED = "INGEST_PRODUCER_ENABLED"
ENV_SAMPLE_RATE = "INGEST_SAMPLE_RATE"
ENV_SAMPLE_KEEP_TAGS = "INGEST_SAMPLE_KEEP_TAGS"
SENDERS = ("auto", "process", "thread")
SETTINGS_NOT_PLAIN = "the producer settings hold Python objects (an ssl_context, a token provider, ...)"
"""Why settings cannot go to a sender process: it receives them as plain data."""

DEFAULT_BOOTSTRAP_SERVERS = "localhost:9092"

ENV_SECURITY: Mapping[str, str] = {
    "KAFKA_SECURITY_PROTOCOL": "security_protocol",
    "KAFKA_SSL_CAFILE": "ssl_cafile",
    "KAFKA_SSL_CERTFILE": "ssl_certfile",
    "KAFKA_SSL_KEYFILE": "ssl_keyfile",
    "KAFKA_SSL_PASSWORD": "ssl_password",
    "KAFKA_SSL_CHECK_HOSTNAME": "ssl_check_hostname",
    "KAFKA_SASL_MECHANISM": "sasl_mechanism",
    "KAFKA_SASL_USERNAME": "sasl_plain_username",
    "KAFKA_SASL_PASSWORD": "sasl_plain_password",
}
"""Environment variable → kafka-python producer setting, for TLS and SASL (the consumer's names)."""
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
"""Mechanisms the variables configure; others (OAUTHBEARER, GSSAPI) go through ``producer_config``."""
_FILES = ("KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")

PRODUCER_DEFAULTS: Mapping[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    # Few, large batches: the Kafka client's I/O thread shares the GIL with the app, and each batch
    # it completes (one callback per record) is a burst the app's thread may wait behind. A labelling
    # task is in no hurry; flush() and close() send at once regardless.
    "linger_ms": 500,
    "batch_size": 256 * 1024,
    # Only the background sender ever blocks, and it re-queues what it could not hand over.
    "max_block_ms": 5_000,
    "bootstrap_timeout_ms": 10_000,
    "request_timeout_ms": 10_000,
    # Records the client could not deliver in time come back to the handler's buffer and are retried.
    "delivery_timeout_ms": 30_000,
    "reconnect_backoff_max_ms": 5_000,
}
"""kafka-python settings the handler uses unless ``producer_config`` overrides them."""

_FORBIDDEN_SETTINGS = {
    "key_serializer": "the handler sends encoded bytes",
    "value_serializer": "the handler sends encoded bytes",
    "transactional_id": "events are published one by one, not in transactions",
}
_KNOWN_SETTINGS = {*PRODUCER_DEFAULTS, *ENV_SECURITY.values(), "max_request_size", "compression_type"}
"""Settings known to be kafka-python's without importing it; others are checked against its own list."""
_TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")


def resolve_bootstrap_servers(value: str | Sequence[str] | None) -> list[str]:
    """The broker list: the argument, else ``KAFKA_BOOTSTRAP_SERVERS``, else ``localhost:9092``."""
    if value is None:
        value = os.environ.get(ENV_BOOTSTRAP_SERVERS) or DEFAULT_BOOTSTRAP_SERVERS
    if isinstance(value, str):
        servers = [part.strip() for part in value.split(",") if part.strip()]
    else:
        servers = [str(part).strip() for part in value if str(part).strip()]
    if not servers:
        raise ValueError("bootstrap_servers is empty; give host:port of at least one Kafka broker")
    return servers


def resolve_topic(value: str | None) -> str:
    """The topic: the argument, else ``INGEST_TOPIC``, else the consumer's default topic."""
    topic = value if value is not None else os.environ.get(ENV_TOPIC) or DEFAULT_TOPIC
    if not _TOPIC_NAME.match(topic) or topic in {".", ".."}:
        raise ValueError(f"invalid Kafka topic name {topic!r}: use 1-249 characters of [a-zA-Z0-9._-]")
    return topic


def resolve_project_id(value: int | str | None) -> int | None:
    """The project id: the argument, else ``LABEL_STUDIO_PROJECT_ID``, else none (the name is used)."""
    if value is None or value == "":
        value = os.environ.get(ENV_PROJECT_ID) or None
    if value is None:
        return None
    try:
        project_id = int(value)
    except ValueError:
        raise ValueError(f"project_id must be a positive integer, not {value!r}") from None
    if project_id <= 0:
        raise ValueError(f"project_id must be a positive integer, not {project_id}")
    return project_id


def security_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """kafka-python TLS/SASL settings from the ``KAFKA_*`` variables of :data:`ENV_SECURITY` that are set.

    Raises:
        ValueError: naming the variable, for an unknown protocol or mechanism, a missing file, a
            boolean that is not one, or a SASL protocol without mechanism, user name and password.
            The message never contains a password.
    """
    environ = os.environ if environ is None else environ
    values = {env: value for env in ENV_SECURITY if (value := environ.get(env, "").strip())}
    protocol = values.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper()
    if protocol not in SECURITY_PROTOCOLS:
        raise ValueError(f"KAFKA_SECURITY_PROTOCOL={protocol!r}: use one of {', '.join(SECURITY_PROTOCOLS)}")
    mechanism = values.get("KAFKA_SASL_MECHANISM", "").upper()
    if mechanism and mechanism not in SASL_MECHANISMS:
        raise ValueError(f"KAFKA_SASL_MECHANISM={mechanism!r}: use one of {', '.join(SASL_MECHANISMS)}")
    for env in _FILES:
        if env in values and not Path(values[env]).is_file():
            raise ValueError(f"{env}: no such file {values[env]!r}")
    options: dict[str, Any] = {ENV_SECURITY[env]: value for env, value in values.items()}
    if "KAFKA_SECURITY_PROTOCOL" in values:
        options["security_protocol"] = protocol
    if mechanism:
        options["sasl_mechanism"] = mechanism
    if "KAFKA_SSL_CHECK_HOSTNAME" in values:
        flag = values["KAFKA_SSL_CHECK_HOSTNAME"].lower()
        if flag not in _TRUE + _FALSE:
            raise ValueError(f"KAFKA_SSL_CHECK_HOSTNAME={flag!r}: use true or false")
        options["ssl_check_hostname"] = flag in _TRUE
    return options


def _check_sasl(config: Mapping[str, Any]) -> None:
    """A SASL protocol with a password mechanism needs the mechanism, the user name and the password."""
    if not str(config.get("security_protocol", "")).startswith("SASL_"):
        return
    mechanism = config.get("sasl_mechanism")
    if mechanism is not None and mechanism not in SASL_MECHANISMS:
        return  # OAUTHBEARER, GSSAPI, ...: kafka-python checks their own settings
    missing = [
        f"{env} (or producer_config[{key!r}])"
        for env, key in (
            ("KAFKA_SASL_MECHANISM", "sasl_mechanism"),
            ("KAFKA_SASL_USERNAME", "sasl_plain_username"),
            ("KAFKA_SASL_PASSWORD", "sasl_plain_password"),
        )
        if not config.get(key)
    ]
    if missing:
        raise ValueError(f"security_protocol={config['security_protocol']} needs {', '.join(missing)}")


def producer_settings(bootstrap_servers: list[str], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The full kafka-python configuration: defaults, then TLS/SASL from the environment
    (:func:`security_from_env`), then the caller's settings (``producer_config`` wins per setting).

    Raises:
        ValueError: for a setting kafka-python does not know, or one the handler must own.
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - _KNOWN_SETTINGS)
    if unknown:
        # only now: an app whose events go to a sender process never imports kafka-python itself
        from kafka import KafkaProducer  # noqa: PLC0415

        unknown = sorted(set(unknown) - set(KafkaProducer.DEFAULT_CONFIG))
    if unknown:
        raise ValueError(f"unknown kafka-python producer settings: {', '.join(unknown)}")
    for key, why in _FORBIDDEN_SETTINGS.items():
        if overrides.get(key) is not None:
            raise ValueError(f"producer_config may not set {key}: {why}")
    if "bootstrap_servers" in overrides:
        raise ValueError("give bootstrap_servers as the handler's own argument, not in producer_config")
    config = {**PRODUCER_DEFAULTS, **security_from_env(), **overrides, "bootstrap_servers": bootstrap_servers}
    _check_sasl(config)
    return config


def resolve_sender(
    value: str | None, *, own_producer: bool, settings: Mapping[str, Any] | None
) -> Literal["process", "thread"]:
    """Where kafka-python runs: ``"thread"`` (a thread of this process) or ``"process"`` (a sender
    process the handler starts).

    The argument, else ``INGEST_PRODUCER_SENDER``, else ``"auto"``, which is a thread: what every
    telemetry exporter a platform team already runs does. ``"process"`` is an opt-in for CPU-bound
    asyncio services, where kafka-python's pure-Python work would compete with the app for the GIL.

    Raises:
        ValueError: for an unknown value, or ``"process"`` where a sender process cannot work.
    """
    choice = (value if value is not None else os.environ.get(ENV_SENDER, "")).strip().lower() or "auto"
    if choice not in SENDERS:
        raise ValueError(f"sender must be one of {', '.join(SENDERS)}, not {choice!r}")
    if choice != "process":
        return "thread"
    problem = _process_sender_problem(own_producer, settings)
    if problem is not None:
        raise ValueError(f"sender='process' is not possible: {problem}; use sender='thread'")
    return "process"


def _process_sender_problem(own_producer: bool, settings: Mapping[str, Any] | None) -> str | None:
    if not own_producer or settings is None:
        return "an existing producer= cannot be moved to another process"
    if os.name != "posix" or not hasattr(socket, "MSG_NOSIGNAL"):  # macOS has no MSG_NOSIGNAL
        return "sender processes need Linux or another POSIX system with MSG_NOSIGNAL"
    if getattr(sys, "frozen", False) or not sys.executable:
        return "this program is not run by a Python interpreter it could start again"
    if not Path(sys.executable).name.lower().startswith(("python", "pypy")):
        return f"{sys.executable} does not look like a Python interpreter"
    if not plain_data(dict(settings)):
        return SETTINGS_NOT_PLAIN
    return None


def service_name() -> str | None:
    """This process's service name: ``OTEL_SERVICE_NAME``, ``INGEST_SERVICE_NAME``, or the program name."""
    for name in ENV_SERVICE_NAMES:
        if value := os.environ.get(name):
            return value
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return program or None


def host_name() -> str | None:
    """This machine's host name, or none when it cannot be read."""
    try:
        return socket.gethostname() or None
    except OSError:
        return None


def resolve_enabled(value: bool | None) -> bool:
    """Whether the handler publishes at all: the argument, else ``INGEST_PRODUCER_ENABLED``, else true.

    Raises:
        ValueError: for a variable that is not a yes or a no.
    """
    if value is not None:
        return bool(value)
    flag = os.environ.get(ENV_ENABLED, "").strip().lower()
    if not flag:
        return True
    if flag not in _TRUE + _FALSE:
        raise ValueError(f"{ENV_ENABLED}={flag!r}: use true or false")
    return flag in _TRUE


def resolve_sample_rate(value: float | None) -> float:
    """The share of traces published: the argument, else ``INGEST_SAMPLE_RATE``, else 1 (all).

    Raises:
        ValueError: for a rate that is not a number from 0 to 1.
    """
    if value is not None:
        return float(value)
    text = os.environ.get(ENV_SAMPLE_RATE, "").strip()
    if not text:
        return 1.0
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{ENV_SAMPLE_RATE}={text!r}: use a number from 0 to 1") from None


def resolve_keep_tags(value: Sequence[str] | None) -> frozenset[str]:
    """Tags whose runs are always published: the argument, else ``INGEST_SAMPLE_KEEP_TAGS``
    (comma-separated), else none."""
    if value is not None:
        if isinstance(value, str):
            raise ValueError("keep_tags must be a list of tags, not one string")
        return frozenset(str(tag) for tag in value)
    text = os.environ.get(ENV_SAMPLE_KEEP_TAGS, "")
    return frozenset(tag.strip() for tag in text.split(",") if tag.strip())


ENV_GRANULARITY = "INGEST_GRANULARITY"
GRANULARITIES = ("call", "trace")


def resolve_granularity(value: str | None) -> str:
    """What one event is: ``"call"`` (one per LLM call, the default) or ``"trace"`` (one trajectory
    per agent run): the argument, else ``INGEST_GRANULARITY``, else ``"call"``.

    Raises:
        ValueError: for anything else.
    """
    text = value if value is not None else os.environ.get(ENV_GRANULARITY, "").strip() or "call"
    choice = text.strip().lower()
    if choice not in GRANULARITIES:
        raise ValueError(
            f"granularity must be 'call' or 'trace', not {text!r} (argument or {ENV_GRANULARITY})"
        )
    return choice

"""The consumer's settings: environment variables, each with a matching command-line flag.

Every setting has one environment variable (the name in :data:`Settings` field aliases, e.g.
``KAFKA_BOOTSTRAP_SERVERS``) and one flag: the variable's name without the ``INGEST_`` prefix, in
lower case with dashes (``INGEST_BATCH_SIZE`` → ``--batch-size``, ``LABEL_STUDIO_URL`` →
``--label-studio-url``). Flags win over the environment. docs/CONSUMER.md lists them all.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import (
    AliasChoices,
    Field,
    FilePath,
    HttpUrl,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from labelstudio_ingest.consumer.allowlist import CreationPolicy, TargetAllowlist
from labelstudio_ingest.consumer.tracelinks import check_url_template
from labelstudio_ingest.schemas import DEFAULT_FEEDBACK_TOPIC, DEFAULT_LIMITS, DEFAULT_TOPIC, Limits

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
CrashPoint = Literal["pending", "import", "ledger"]
"""Test-only fault points (see ``INGEST_FAULT_CRASH_AFTER``)."""


def _setting(env: str, default: object = ..., description: str = "", **kwargs: object) -> Any:
    """A field read from the environment variable ``env`` (typed ``Any`` so fields keep their types)."""
    info: FieldInfo = Field(
        default,
        validation_alias=AliasChoices(env),
        description=description,
        json_schema_extra={"env": env},
        **kwargs,  # type: ignore[call-overload]
    )
    return info


class KafkaConnection(BaseSettings):
    """How to reach Kafka and which topics to use: what every sub-command shares (``consume``, ``dlq``).

    No Label Studio setting is needed here, so ``dlq`` commands run without a Label Studio token.
    """

    model_config = SettingsConfigDict(
        case_sensitive=False,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
        env_ignore_empty=True,
    )

    # --- Kafka -----------------------------------------------------------------------------
    bootstrap_servers: str = _setting(
        "KAFKA_BOOTSTRAP_SERVERS",
        description="Comma-separated host:port list of Kafka brokers.",
        min_length=1,
    )
    security_protocol: SecurityProtocol = _setting(
        "KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    ssl_cafile: FilePath | None = _setting("KAFKA_SSL_CAFILE", None, "CA bundle (PEM) to verify brokers.")
    ssl_certfile: FilePath | None = _setting("KAFKA_SSL_CERTFILE", None, "Client certificate (PEM), mTLS.")
    ssl_keyfile: FilePath | None = _setting("KAFKA_SSL_KEYFILE", None, "Client private key (PEM), mTLS.")
    ssl_password: SecretStr | None = _setting("KAFKA_SSL_PASSWORD", None, "Password of the client key.")
    ssl_check_hostname: bool = _setting(
        "KAFKA_SSL_CHECK_HOSTNAME", True, "Check that broker certificates match the host name."
    )
    sasl_mechanism: SaslMechanism | None = _setting(
        "KAFKA_SASL_MECHANISM", None, "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with a SASL_* protocol)."
    )
    sasl_username: str | None = _setting("KAFKA_SASL_USERNAME", None, "SASL user name.")
    sasl_password: SecretStr | None = _setting("KAFKA_SASL_PASSWORD", None, "SASL password.")

    # --- Topics and group ------------------------------------------------------------------
    topic: str = _setting("INGEST_TOPIC", DEFAULT_TOPIC, "Topic of interaction events.", min_length=1)
    dlq_topic: str | None = _setting(
        "INGEST_DLQ_TOPIC", None, "Dead-letter topic (default: <INGEST_TOPIC>.dlq).", min_length=1
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_ports(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",") if s.strip()]
        if not servers:
            raise ValueError("give at least one host:port")
        for server in servers:
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"{server!r} is not host:port")
        return ",".join(servers)

    @model_validator(mode="after")
    def _sasl_complete(self) -> Self:
        if self.security_protocol.startswith("SASL_"):
            missing = [
                env
                for env, value in (
                    ("KAFKA_SASL_MECHANISM", self.sasl_mechanism),
                    ("KAFKA_SASL_USERNAME", self.sasl_username),
                    ("KAFKA_SASL_PASSWORD", self.sasl_password),
                )
                if value is None
            ]
            if missing:
                raise ValueError(
                    f"KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs {', '.join(missing)}"
                )
        return self

    @property
    def dlq(self) -> str:
        """The dead-letter topic."""
        return self.dlq_topic or f"{self.topic}.dlq"

    def kafka_security(self) -> dict[str, object]:
        """The kafka-python client options for TLS and SASL (only those that are set)."""
        options: dict[str, object] = {"security_protocol": self.security_protocol}
        if self.security_protocol in {"SSL", "SASL_SSL"}:
            options["ssl_check_hostname"] = self.ssl_check_hostname
            for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
                value = getattr(self, key)
                if value is not None:
                    options[key] = str(value)
            if self.ssl_password is not None:
                options["ssl_password"] = self.ssl_password.get_secret_value()
        if self.security_protocol.startswith("SASL_"):
            assert self.sasl_password is not None  # checked by _sasl_complete
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password.get_secret_value()
        return options

    def secrets(self) -> list[str]:
        """The secret values of these settings, to keep out of logs and messages."""
        return [s.get_secret_value() for s in (self.ssl_password, self.sasl_password) if s is not None]


class Settings(KafkaConnection):
    """Everything ``labelstudio-ingest consume`` needs; see docs/CONSUMER.md for the reference."""

    # --- Group -----------------------------------------------------------------------------
    group_id: str = _setting("INGEST_GROUP_ID", "labelstudio-ingest", "Consumer group id.", min_length=1)
    ledger_topic: str | None = _setting(
        "INGEST_LEDGER_TOPIC",
        None,
        "Dedup ledger topic (default: <INGEST_TOPIC>.ledger).",
        min_length=1,
    )
    create_topics: bool = _setting(
        "INGEST_CREATE_TOPICS", True, "Create the ledger and dead-letter topics at start-up when missing."
    )
    auto_offset_reset: Literal["earliest", "latest"] = _setting(
        "INGEST_AUTO_OFFSET_RESET", "earliest", "Where a group without committed offsets starts."
    )
    max_poll_interval_ms: int = _setting(
        "INGEST_MAX_POLL_INTERVAL_MS",
        300_000,
        "Kafka max.poll.interval.ms; also the rebalance timeout (group joins take about this long).",
        ge=1_000,
    )
    session_timeout_ms: int = _setting(
        "INGEST_SESSION_TIMEOUT_MS", 45_000, "Kafka session.timeout.ms.", ge=1_000
    )
    heartbeat_interval_ms: int = _setting(
        "INGEST_HEARTBEAT_INTERVAL_MS", 3_000, "Kafka heartbeat.interval.ms.", ge=100
    )

    # --- Batching ---------------------------------------------------------------------------
    batch_size: int = _setting(
        "INGEST_BATCH_SIZE",
        500,
        "Most events in one batch (one import per project per batch).",
        ge=1,
        le=50_000,
    )
    batch_max_wait_ms: int = _setting(
        "INGEST_BATCH_MAX_WAIT_MS", 500, "Longest wait to fill a batch once it has its first event.", ge=0
    )

    # --- Label Studio -----------------------------------------------------------------------
    label_studio_url: HttpUrl = _setting(
        "LABEL_STUDIO_URL", HttpUrl("http://localhost:8080"), "Label Studio URL."
    )
    label_studio_api_key: SecretStr = _setting(
        "LABEL_STUDIO_API_KEY", description="Label Studio access token."
    )
    import_timeout_s: float = _setting(
        "INGEST_IMPORT_TIMEOUT_S", 60.0, "Timeout of one Label Studio request (an import of one batch).", gt=0
    )
    allow_create_projects: bool = _setting(
        "INGEST_ALLOW_CREATE_PROJECTS", True, "Create a project named by an event when none has that title."
    )
    allowed_project_ids: Annotated[frozenset[int], NoDecode] = _setting(
        "INGEST_ALLOWED_PROJECT_IDS",
        frozenset(),
        "Comma-separated project ids events may write to (with INGEST_ALLOWED_PROJECT_NAMES: the "
        "allowlist; both empty: any project). Others are dead letters (not_allowed).",
    )
    allowed_project_names: Annotated[tuple[str, ...], NoDecode] = _setting(
        "INGEST_ALLOWED_PROJECT_NAMES",
        (),
        "Comma-separated title patterns (fnmatch, e.g. LangChain-*) events may write to by project_name.",
    )
    create_project_names: Annotated[tuple[str, ...], NoDecode] = _setting(
        "INGEST_CREATE_PROJECT_NAMES",
        (),
        "Comma-separated title patterns (fnmatch) of the projects events may create (empty: any title "
        "allowed by INGEST_ALLOWED_PROJECT_NAMES). Other unknown titles are dead letters (not_allowed).",
    )
    max_projects_per_hour: int = _setting(
        "INGEST_MAX_PROJECTS_PER_HOUR",
        0,
        "Most projects one consumer process creates in any 60 minutes (0: no cap). Events over it are "
        "dead letters (project_limit), to replay later.",
        ge=0,
    )
    project_cache_ttl_s: float = _setting(
        "INGEST_PROJECT_CACHE_TTL_S", 300.0, "How long a resolved project (and its config) is cached.", ge=0
    )
    project_settle_s: float = _setting(
        "INGEST_PROJECT_SETTLE_S",
        1.0,
        "Wait before the listing that decides which project a title names (above the longest project "
        "creation in Label Studio's database; 0 is exact on SQLite only). See docs/ROUTING.md.",
        ge=0,
        le=60,
    )
    backoff_initial_s: float = _setting(
        "INGEST_BACKOFF_INITIAL_S", 0.5, "First wait after Label Studio fails (doubles each time).", gt=0
    )
    backoff_max_s: float = _setting("INGEST_BACKOFF_MAX_S", 30.0, "Longest wait between retries.", gt=0)
    isolate_after_failures: int = _setting(
        "INGEST_ISOLATE_AFTER_FAILURES",
        3,
        "Imports of one batch failing in a row with a 5xx or a timeout, while Label Studio's /health "
        "answers, before the import is split to find the run that breaks it (dead letter server_error).",
        ge=1,
    )
    import_max_bytes: int = _setting(
        "INGEST_IMPORT_MAX_BYTES",
        8 * 2**20,
        "Most bytes (about) of tasks in one import request; a batch needs more requests beyond it.",
        ge=64 * 1024,
    )
    import_max_tasks: int = _setting(
        "INGEST_IMPORT_MAX_TASKS", 5_000, "Most tasks in one import request.", ge=1
    )
    meta_max_bytes: int = _setting(
        "INGEST_META_MAX_BYTES",
        16 * 1024,
        "Most bytes of a run's metadata copied into each task after its first (the first task has it "
        "all); a cut copy says so in meta.metadata_truncated.",
        ge=0,
    )

    # --- Deduplication ----------------------------------------------------------------------
    dedup_horizon_days: float = _setting(
        "INGEST_DEDUP_HORIZON_DAYS", 30.0, "How long an imported run_id is remembered.", gt=0
    )
    dedup_max_run_ids: int = _setting(
        "INGEST_DEDUP_MAX_RUN_IDS", 1_000_000, "Most run_ids remembered per input partition.", ge=1_000
    )
    ledger_retention_check: Literal["refuse", "warn"] = _setting(
        "INGEST_LEDGER_RETENTION_CHECK",
        "refuse",
        "An existing ledger topic whose retention.ms/retention.bytes is below what the dedup settings "
        "need: refuse to start, or warn and start.",
    )

    # --- Event limits (schemas.Limits) ------------------------------------------------------
    max_event_bytes: int = _setting(
        "INGEST_MAX_EVENT_BYTES", DEFAULT_LIMITS.max_event_bytes, "Encoded event size.", ge=1
    )
    max_inputs: int = _setting(
        "INGEST_MAX_INPUTS", DEFAULT_LIMITS.max_inputs, "Prompts/conversations per run.", ge=1
    )
    max_messages: int = _setting(
        "INGEST_MAX_MESSAGES", DEFAULT_LIMITS.max_messages, "Messages per conversation.", ge=1
    )
    max_generations: int = _setting(
        "INGEST_MAX_GENERATIONS", DEFAULT_LIMITS.max_generations, "Generations per input.", ge=1
    )
    max_text_chars: int = _setting(
        "INGEST_MAX_TEXT_CHARS", DEFAULT_LIMITS.max_text_chars, "Characters per text.", ge=1
    )
    max_project_config_bytes: int = _setting(
        "INGEST_MAX_PROJECT_CONFIG_BYTES", DEFAULT_LIMITS.max_project_config_bytes, "Label config size.", ge=1
    )
    max_tags: int = _setting("INGEST_MAX_TAGS", DEFAULT_LIMITS.max_tags, "Tags per run.", ge=0)

    # --- Service ----------------------------------------------------------------------------
    metrics_host: str = _setting("INGEST_METRICS_HOST", "0.0.0.0", "Address of the metrics/health server.")
    metrics_port: int = _setting(
        "INGEST_METRICS_PORT",
        9464,
        "Port of /metrics, /healthz and /readyz (0: any free port).",
        ge=0,
        le=65535,
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = _setting(
        "INGEST_LOG_LEVEL", "INFO", "Log level."
    )
    shutdown_timeout_s: float = _setting(
        "INGEST_SHUTDOWN_TIMEOUT_S",
        20.0,
        "After SIGTERM, how long the batch in flight may still take before it is left uncommitted.",
        gt=0,
    )

    # --- Feedback webhooks (docs/FEEDBACK.md) --------------------------------------------------
    webhook_port: int | None = _setting(
        "INGEST_WEBHOOK_PORT",
        None,
        "Port of the Label Studio webhook endpoint (unset: no endpoint; 0: any free port). Never the "
        "metrics port.",
        ge=0,
        le=65535,
    )
    webhook_host: str = _setting("INGEST_WEBHOOK_HOST", "0.0.0.0", "Address of the webhook endpoint.")
    webhook_secret: SecretStr | None = _setting(
        "INGEST_WEBHOOK_SECRET", None, "Shared secret Label Studio sends in a header (required with a port)."
    )
    webhook_max_body_bytes: int = _setting(
        "INGEST_WEBHOOK_MAX_BODY_BYTES", 4 * 2**20, "Largest webhook request body accepted.", ge=1024
    )
    webhook_request_timeout_s: float = _setting(
        "INGEST_WEBHOOK_REQUEST_TIMEOUT_S",
        10.0,
        "Deadline to receive one webhook request (line, headers, body), however slowly it is sent.",
        gt=0,
    )
    webhook_max_connections: int = _setting(
        "INGEST_WEBHOOK_MAX_CONNECTIONS",
        16,
        "Webhook requests served at once; more are answered 503 without a thread.",
        ge=1,
        le=1024,
    )
    feedback_topic: str = _setting(
        "INGEST_FEEDBACK_TOPIC", DEFAULT_FEEDBACK_TOPIC, "Topic of feedback events.", min_length=1
    )
    feedback_textarea: str | None = _setting(
        "INGEST_FEEDBACK_TEXTAREA", None, "TextArea holding the correction (default: the predicted one)."
    )

    # --- Trace links (consumer/tracelinks.py) -------------------------------------------------
    trace_url_template: str | None = _setting(
        "INGEST_TRACE_URL_TEMPLATE",
        None,
        "Link to a run's trace in its tasks (data.trace_url), e.g. https://traces.example/{trace_id}; "
        "names: {trace_id} (root run id), {langsmith_trace_id}, {otel_trace_id}, {run_id}.",
    )

    # --- Test-only fault injection -----------------------------------------------------------
    fault_crash_after: CrashPoint | None = _setting(
        "INGEST_FAULT_CRASH_AFTER",
        None,
        "TEST ONLY: SIGKILL this process right after this step (pending|import|ledger) of a batch.",
    )
    fault_crash_batch: int = _setting(
        "INGEST_FAULT_CRASH_BATCH", 1, "TEST ONLY: the number of the batch (1-based) that crashes.", ge=1
    )

    @field_validator("label_studio_api_key")
    @classmethod
    def _non_empty_key(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("is empty")
        return value

    @field_validator("trace_url_template")
    @classmethod
    def _trace_url_template(cls, value: str | None) -> str | None:
        return None if value is None or not value.strip() else check_url_template(value.strip())

    @field_validator("allowed_project_ids", mode="before")
    @classmethod
    def _id_list(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return frozenset(int(part) for part in _comma_list(value))
            except ValueError:
                raise ValueError(f"must be comma-separated project ids, not {value!r}") from None
        return value

    @field_validator("allowed_project_names", "create_project_names", mode="before")
    @classmethod
    def _name_list(cls, value: object) -> object:
        return tuple(_comma_list(value)) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("INGEST_BACKOFF_MAX_S must be at least INGEST_BACKOFF_INITIAL_S")
        if self.import_timeout_s * 1000 >= self.max_poll_interval_ms:
            raise ValueError(
                "INGEST_IMPORT_TIMEOUT_S must be below INGEST_MAX_POLL_INTERVAL_MS: one Label Studio "
                "request is the longest the consumer goes without polling the group"
            )
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError("INGEST_HEARTBEAT_INTERVAL_MS must be below INGEST_SESSION_TIMEOUT_MS")
        if self.webhook_port is not None:
            if self.webhook_secret is None or not self.webhook_secret.get_secret_value().strip():
                raise ValueError("INGEST_WEBHOOK_PORT needs INGEST_WEBHOOK_SECRET")
            if self.webhook_port != 0 and self.webhook_port == self.metrics_port:
                raise ValueError("INGEST_WEBHOOK_PORT must differ from INGEST_METRICS_PORT")
        return self

    @property
    def ledger(self) -> str:
        """The dedup ledger topic."""
        return self.ledger_topic or f"{self.topic}.ledger"

    def secrets(self) -> list[str]:
        """The Label Studio token, the webhook secret and the Kafka secrets: kept out of logs,
        dead letters and messages."""
        webhook = [self.webhook_secret.get_secret_value()] if self.webhook_secret is not None else []
        return [self.label_studio_api_key.get_secret_value(), *webhook, *super().secrets()]

    @property
    def allowlist(self) -> TargetAllowlist:
        """The projects events may write to (inactive when both lists are empty)."""
        return TargetAllowlist(self.allowed_project_ids, self.allowed_project_names)

    @property
    def creation_policy(self) -> CreationPolicy:
        """Which unknown titles events may create, and how many per hour."""
        return CreationPolicy(self.create_project_names, self.max_projects_per_hour)

    @property
    def limits(self) -> Limits:
        """The event limits as the contract's :class:`Limits`."""
        return Limits(
            max_event_bytes=self.max_event_bytes,
            max_inputs=self.max_inputs,
            max_messages=self.max_messages,
            max_generations=self.max_generations,
            max_text_chars=self.max_text_chars,
            max_project_config_bytes=self.max_project_config_bytes,
            max_tags=self.max_tags,
        )


def _comma_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def env_name(field: str) -> str:
    """The environment variable of a settings field, e.g. ``batch_size`` → ``INGEST_BATCH_SIZE``."""
    alias = Settings.model_fields[field].validation_alias
    assert isinstance(alias, AliasChoices)
    first = alias.choices[0]
    assert isinstance(first, str)
    return first


def flag_name(field: str) -> str:
    """The command-line flag of a settings field, e.g. ``batch_size`` → ``--batch-size``."""
    return "--" + env_name(field).removeprefix("INGEST_").lower().replace("_", "-")


def _field_of(name: str) -> str:
    """The settings field that an error location names (a field name or an env variable)."""
    if name in Settings.model_fields:
        return name
    by_env = {env_name(field).lower(): field for field in Settings.model_fields}
    return by_env.get(name.lower(), name)


def describe_errors(exc: ValidationError) -> str:
    """A settings validation error as one line that names each setting by its variable and flag."""
    problems: list[str] = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        field = _field_of(str(loc[0])) if loc else ""
        message = str(error["msg"]).removeprefix("Value error, ")
        if field in Settings.model_fields:
            name = f"{env_name(field)} ({flag_name(field)})"
            if error["type"] == "missing":
                problems.append(f"{name} is required but not set")
            else:
                problems.append(f"{name}: {message}")
        else:
            problems.append(message)
    return "invalid settings: " + "; ".join(problems)


__all__ = ["CrashPoint", "KafkaConnection", "Settings", "describe_errors", "env_name", "flag_name"]

"""Readable messages for a Kafka connection that fails: the settings in play and what to check.

kafka-python reports a refused TLS handshake or SASL login only in its log and then gives up with
``Unable to bootstrap``; :class:`ClientErrors` keeps the client's last complaint so the message can
say which step failed. Nothing here ever includes a password.
"""

from __future__ import annotations

import logging
import re
from types import TracebackType

from labelstudio_ingest.consumer.logs import Masker
from labelstudio_ingest.consumer.settings import KafkaConnection

_KAFKA_LOGGER = "kafka"
_MAX_DETAIL = 300
_REASON = re.compile(r"(?:Connection lost|Connection failed|failed): (?P<reason>.+?)(?: \(backoff [^)]*\))?$")
_NOISE = ("Bootstrap failed", "not ready")


class ClientErrors(logging.Handler):
    """While active (``with``), remembers why kafka-python's last connection attempt failed.

    Keeps the reason of its last "Connection lost/failed: ..." warning or error (e.g. ``Handshake
    failed: [SSL: CERTIFICATE_VERIFY_FAILED] ...``), skipping its summaries ("Bootstrap failed").
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the failure reason of a record (records that cannot be formatted are ignored)."""
        try:
            message = record.getMessage()
        except Exception:  # a log handler must never raise
            return
        if any(noise in message for noise in _NOISE):
            return
        match = _REASON.search(message)
        self.last = (match.group("reason") if match else message)[:_MAX_DETAIL]

    def __enter__(self) -> ClientErrors:
        logging.getLogger(_KAFKA_LOGGER).addHandler(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        logging.getLogger(_KAFKA_LOGGER).removeHandler(self)


def describe_connection(conn: KafkaConnection) -> str:
    """How the client connects, as the variables that say so (never a password)."""
    parts = [
        f"KAFKA_BOOTSTRAP_SERVERS={conn.bootstrap_servers}",
        f"KAFKA_SECURITY_PROTOCOL={conn.security_protocol}",
    ]
    if conn.security_protocol.startswith("SASL_"):
        parts += [f"KAFKA_SASL_MECHANISM={conn.sasl_mechanism}", f"KAFKA_SASL_USERNAME={conn.sasl_username}"]
    if conn.security_protocol.endswith("SSL"):
        for env, value in (
            ("KAFKA_SSL_CAFILE", conn.ssl_cafile),
            ("KAFKA_SSL_CERTFILE", conn.ssl_certfile),
            ("KAFKA_SSL_KEYFILE", conn.ssl_keyfile),
        ):
            if value is not None:
                parts.append(f"{env}={value}")
        if not conn.ssl_check_hostname:
            parts.append("KAFKA_SSL_CHECK_HOSTNAME=false")
    return ", ".join(parts)


def what_to_check(conn: KafkaConnection) -> str:
    """The settings that decide whether this connection can work."""
    checks = [
        "KAFKA_BOOTSTRAP_SERVERS (host:port of a broker listener)",
        "KAFKA_SECURITY_PROTOCOL (it must match the listener: a TLS listener needs SSL or SASL_SSL)",
    ]
    if conn.security_protocol.endswith("SSL"):
        checks += [
            "KAFKA_SSL_CAFILE (the CA that signed the broker's certificate; unset: the system CAs)",
            "KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE (when the broker requires client certificates)",
        ]
    if conn.security_protocol.startswith("SASL_"):
        checks.append("KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
    return "; ".join(checks)


def connection_failure(conn: KafkaConnection, exc: BaseException, client_error: str | None = None) -> str:
    """One message for a Kafka failure: the exception, the client's last complaint, the settings."""
    message = f"Kafka did not accept the connection ({describe_connection(conn)}): {type(exc).__name__}"
    message += f": {exc}"
    if client_error:
        message += f" (last client error: {client_error})"
    message += f". Check {what_to_check(conn)}."
    return Masker(conn.secrets())(message)


__all__ = ["ClientErrors", "connection_failure", "describe_connection", "what_to_check"]

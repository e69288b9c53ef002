"""Messages for a Kafka connection that fails (pure logic; the real broker is in tests/integration)."""

from __future__ import annotations

import logging
from pathlib import Path

from kafka.errors import KafkaTimeoutError

from labelstudio_ingest.consumer.connection import ClientErrors, connection_failure
from labelstudio_ingest.consumer.settings import KafkaConnection

SECRET = "a-long-sasl-secret"


def _sasl_ssl(tmp_path: Path) -> KafkaConnection:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    return KafkaConnection(
        bootstrap_servers="b1:9096",
        security_protocol="SASL_SSL",
        ssl_cafile=ca,
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="ingest",
        sasl_password=SECRET,
    )


def test_message_names_the_settings_and_hides_the_password(tmp_path: Path) -> None:
    conn = _sasl_ssl(tmp_path)
    message = connection_failure(conn, KafkaTimeoutError(f"Unable to bootstrap {SECRET}"), f"bad {SECRET}")
    for needle in (
        "KAFKA_BOOTSTRAP_SERVERS=b1:9096",
        "KAFKA_SECURITY_PROTOCOL=SASL_SSL",
        "KAFKA_SASL_MECHANISM=SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME=ingest",
        f"KAFKA_SSL_CAFILE={tmp_path / 'ca.pem'}",
        "KafkaTimeoutError",
        "last client error: bad ***",
        "KAFKA_SASL_PASSWORD",
    ):
        assert needle in message
    assert SECRET not in message


def test_plaintext_message_does_not_mention_tls_or_sasl_files() -> None:
    message = connection_failure(KafkaConnection(bootstrap_servers="b1:9092"), KafkaTimeoutError("x"))
    assert "KAFKA_SECURITY_PROTOCOL=PLAINTEXT" in message
    assert "KAFKA_SSL_CAFILE" not in message
    assert "KAFKA_SASL_USERNAME" not in message


def test_client_errors_keeps_the_last_warning_of_kafka_python_only_while_active() -> None:
    client = ClientErrors()
    with client:
        logging.getLogger("kafka.net.connection").info("not this")
        logging.getLogger("kafka.net.connection").error(
            "<KafkaConnection node_id=bootstrap-0>: Connection lost: KafkaConnectionError: Handshake failed"
        )
        logging.getLogger("kafka.net.manager").error("Bootstrap failed: KafkaTimeoutError: x")
    logging.getLogger("kafka.net.connection").error("after")
    assert client.last == "KafkaConnectionError: Handshake failed"

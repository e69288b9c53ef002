"""Settings: environment variables, matching flags, and one clear line for a bad setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from labelstudio_ingest.consumer.cli import build_parser, main
from labelstudio_ingest.consumer.settings import Settings, describe_errors, env_name, flag_name

REQUIRED = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092", "LABEL_STUDIO_API_KEY": "secret-token-123"}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A clean environment with only the required settings."""
    for field in Settings.model_fields:
        monkeypatch.delenv(env_name(field), raising=False)
    for key, value in REQUIRED.items():
        monkeypatch.setenv(key, value)
    return monkeypatch


def test_defaults_follow_the_issue(env: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert settings.topic == "llm.interactions"
    assert settings.group_id == "labelstudio-ingest"
    assert settings.dlq == "llm.interactions.dlq"
    assert settings.ledger == "llm.interactions.ledger"
    assert str(settings.label_studio_url) == "http://localhost:8080/"
    assert settings.limits.max_event_bytes == 1_000_000


def test_derived_topics_follow_a_custom_topic(env: pytest.MonkeyPatch) -> None:
    env.setenv("INGEST_TOPIC", "runs")
    settings = Settings()
    assert (settings.dlq, settings.ledger) == ("runs.dlq", "runs.ledger")
    env.setenv("INGEST_DLQ_TOPIC", "dead")
    assert Settings().dlq == "dead"


def test_the_api_key_is_a_secret(env: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert "secret-token-123" not in repr(settings)
    assert "secret-token-123" not in str(settings.model_dump())
    assert settings.label_studio_api_key.get_secret_value() == "secret-token-123"


def test_flags_mirror_the_environment_names() -> None:
    assert flag_name("bootstrap_servers") == "--kafka-bootstrap-servers"
    assert flag_name("batch_size") == "--batch-size"
    assert flag_name("label_studio_url") == "--label-studio-url"
    assert flag_name("metrics_port") == "--metrics-port"
    assert env_name("dlq_topic") == "INGEST_DLQ_TOPIC"


def test_every_setting_has_a_distinct_flag() -> None:
    flags = [flag_name(field) for field in Settings.model_fields]
    assert len(flags) == len(set(flags))


def test_flags_override_the_environment(env: pytest.MonkeyPatch) -> None:
    env.setenv("INGEST_BATCH_SIZE", "10")
    args = build_parser().parse_args(["consume", "--batch-size", "20", "--no-create-topics"])
    overrides = {k: v for k, v in vars(args).items() if k in Settings.model_fields}
    settings = Settings(**overrides)
    assert settings.batch_size == 20
    assert settings.create_topics is False


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("INGEST_BATCH_SIZE", "many", "INGEST_BATCH_SIZE (--batch-size)"),
        ("INGEST_BATCH_SIZE", "0", "INGEST_BATCH_SIZE (--batch-size)"),
        ("KAFKA_BOOTSTRAP_SERVERS", "no-port", "KAFKA_BOOTSTRAP_SERVERS (--kafka-bootstrap-servers)"),
        ("LABEL_STUDIO_URL", "not a url", "LABEL_STUDIO_URL (--label-studio-url)"),
        ("INGEST_METRICS_PORT", "70000", "INGEST_METRICS_PORT (--metrics-port)"),
        ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL", "KAFKA_SASL_MECHANISM"),
        ("INGEST_IMPORT_TIMEOUT_S", "600", "below INGEST_MAX_POLL_INTERVAL_MS"),
    ],
)
def test_an_invalid_setting_is_named_in_one_line(
    env: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    env.setenv(variable, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    line = describe_errors(caught.value)
    assert "\n" not in line
    assert expected in line


def test_missing_required_settings_stop_start_up_with_one_line(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.delenv("KAFKA_BOOTSTRAP_SERVERS")
    assert main(["consume"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "KAFKA_BOOTSTRAP_SERVERS (--kafka-bootstrap-servers) is required but not set" in err


def test_sasl_settings_reach_kafka_python(env: pytest.MonkeyPatch) -> None:
    env.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    env.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    env.setenv("KAFKA_SASL_USERNAME", "svc")
    env.setenv("KAFKA_SASL_PASSWORD", "pw")
    options = Settings().kafka_security()
    assert options == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc",
        "sasl_plain_password": "pw",
    }


def test_plaintext_passes_no_tls_options(env: pytest.MonkeyPatch) -> None:
    assert Settings().kafka_security() == {"security_protocol": "PLAINTEXT"}


def test_the_crash_fault_is_off_unless_asked_for(env: pytest.MonkeyPatch) -> None:
    assert Settings().fault_crash_after is None
    env.setenv("INGEST_FAULT_CRASH_AFTER", "import")
    assert Settings().fault_crash_after == "import"
    env.setenv("INGEST_FAULT_CRASH_AFTER", "somewhere")
    with pytest.raises(ValidationError):
        Settings()


def test_every_setting_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "CONSUMER.md").read_text()
    missing = [env_name(f) for f in Settings.model_fields if f"`{env_name(f)}` | `{flag_name(f)}`" not in doc]
    assert not missing, f"docs/CONSUMER.md does not list {missing}"

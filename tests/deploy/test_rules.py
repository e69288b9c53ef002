"""The PrometheusRule's groups pass `promtool check rules` and the unit tests in alerts_test.yaml."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.manifests import alert_expressions, rule_groups

UNIT_TESTS = Path(__file__).with_name("alerts_test.yaml")
EXPECTED_ALERTS = {
    "IngestConsumerLagGrowing",
    "IngestDeadLetters",
    "IngestLabelStudioErrors",
    "IngestPausedForLabelStudio",
    "IngestNoProgress",
    "IngestNoConsumerUp",
}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is missing: `apt-get install -y --no-install-recommends prometheus` (make tools)",
            pytrace=False,
        )
    return path


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule_groups()}, sort_keys=False))
    return path


def test_the_issue_alerts_exist() -> None:
    assert alert_expressions().keys() >= EXPECTED_ALERTS


def test_promtool_check_rules(rules_file: Path) -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(rules_file)], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_unit_tests(rules_file: Path) -> None:
    tests = rules_file.with_name(UNIT_TESTS.name)
    shutil.copy(UNIT_TESTS, tests)
    result = subprocess.run(
        [promtool(), "test", "rules", str(tests)], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_links_its_runbook_section() -> None:
    operations = (Path(__file__).parents[2] / "docs" / "OPERATIONS.md").read_text()
    for group in rule_groups():
        for rule in group["rules"]:
            if "alert" in rule:
                assert f"#{rule['alert'].lower()}" in rule["annotations"]["description"]
                assert f"### {rule['alert']}" in operations, f"OPERATIONS.md has no section {rule['alert']}"

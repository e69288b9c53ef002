"""The fault run of ``bench/fault_run.py`` at a small scale, against the session's servers.

About 600 runs (plus duplicates and bad records of every kind) from three producers while one of two
replicas is SIGKILLed twice, Label Studio is stopped and restarted once, and a third replica joins and
leaves. The same checks as the full run: per project every run once, no run twice anywhere, every bad
record dead-lettered with its reason. docs/RELIABILITY.md has the full-scale figures.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.fault_run import Config, Servers, report, run
from tests.harness import LabelStudioServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SMALL = Config(
    events=600,
    producers=3,
    duplicate_ratio=0.2,
    bad_records=24,
    kills=2,
    ls_outages=1,
    add_remove=True,
    seed=11,
    projects=3,
    partitions=4,
    publish_seconds=50.0,
    outage_seconds=6.0,
    drain_timeout_s=240.0,
)


@pytest.mark.timeout(600)
def test_small_fault_run_loses_doubles_and_lets_in_nothing(
    tmp_path: Path, kafka_bootstrap: str, label_studio: LabelStudioServer
) -> None:
    outages = label_studio if label_studio.process is not None else None
    servers = Servers(kafka_bootstrap, label_studio.url, label_studio.api_key, outages)
    lines: list[str] = []
    result = run(SMALL, servers, tmp_path, log=lines.append)
    report(result, log=lines.append)
    print("\n".join(lines))  # shown with -rA or on failure
    assert result.ok, "\n".join(lines)
    figures = result.figures
    assert figures["events_published"] == 600 + 120 + 24
    assert figures["kills"] == 2
    assert figures["ls_outages"] == (1 if outages is not None else 0)
    assert figures["tasks_in_label_studio"] == 600
    assert sum(figures["duplicates_skipped_metric"].values()) >= 120 * 0.5

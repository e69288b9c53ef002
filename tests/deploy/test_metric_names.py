"""Every metric the dashboard and the alerts name is one a running consumer exports."""

from __future__ import annotations

import pytest

from tests.consumer.runner import ConsumerProcess, Rig
from tests.deploy.manifests import (
    alert_expressions,
    dashboard_expressions,
    metric_names,
    recording_rule_names,
)
from tests.deploy.scrape import exported_names, publish_traffic, wait_processed


@pytest.mark.integration
def test_dashboard_and_alerts_name_only_exported_metrics(rig: Rig, consumer: ConsumerProcess) -> None:
    publish_traffic(rig)
    consumer.start().wait_ready()
    wait_processed(consumer, 3)
    exported = exported_names(consumer)
    assert "ingest_events_dead_lettered_total" in exported

    queries = {f"dashboard {k}": v for k, v in dashboard_expressions().items()}
    queries |= {f"rule {k}": v for k, v in alert_expressions().items()}
    unknown = {
        where: sorted(metric_names(expr) - exported - recording_rule_names())
        for where, expr in queries.items()
        if metric_names(expr) - exported - recording_rule_names()
    }
    assert not unknown, f"metrics the consumer does not export: {unknown}"

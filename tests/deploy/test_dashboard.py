"""The Grafana dashboard: provisionable JSON, a datasource variable, the panels the issue asks for."""

from __future__ import annotations

from tests.deploy.manifests import dashboard, dashboard_expressions, metric_names

EXPECTED_PANELS = {
    "Throughput",
    "Consumer lag",
    "Dead letters by reason",
    "Import latency",
    "Duplicates skipped",
    "Retries and Label Studio errors",
    "Tasks per project",
}


def test_dashboard_is_provisionable() -> None:
    board = dashboard()
    assert board["id"] is None, "a provisioned dashboard carries no database id"
    assert board["uid"]
    assert board["title"]
    assert isinstance(board["schemaVersion"], int)
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))


def test_dashboard_has_the_expected_panels() -> None:
    assert {panel["title"] for panel in dashboard()["panels"]} >= EXPECTED_PANELS
    latency = next(p for p in dashboard()["panels"] if p["title"] == "Import latency")
    quantiles = {t["legendFormat"] for t in latency["targets"]}
    assert quantiles == {"p50", "p95", "p99"}


def test_every_panel_uses_the_datasource_variable() -> None:
    board = dashboard()
    (variable,) = [v for v in board["templating"]["list"] if v["name"] == "datasource"]
    assert variable["type"] == "datasource"
    assert variable["query"] == "prometheus"
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_every_query_selects_ingest_metrics() -> None:
    for name, expr in dashboard_expressions().items():
        names = metric_names(expr)
        assert names, f"{name}: no metric in {expr!r}"
        assert all(n.startswith("ingest_") for n in names), f"{name}: {names}"


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le) (rate(ingest_import_duration_seconds_bucket{outcome="ok"}'
        "[$__rate_interval]))) > 1e3 and on (namespace) absent(ingest_paused) or vector(0)"
    )
    assert metric_names(expr) == {"ingest_import_duration_seconds_bucket", "ingest_paused"}

"""One HTTP port: /metrics, /healthz, /readyz, and 404 for anything else."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from labelstudio_ingest.consumer.health import HealthServer
from labelstudio_ingest.consumer.metrics import Metrics


class Readiness:
    def __init__(self) -> None:
        self.ready = False

    def __call__(self) -> tuple[bool, dict[str, Any]]:
        return self.ready, {"partitions_assigned": int(self.ready)}


@pytest.fixture
def served() -> Iterator[tuple[str, Metrics, Readiness]]:
    metrics = Metrics()
    readiness = Readiness()
    server = HealthServer("127.0.0.1", 0, metrics.registry, readiness)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}", metrics, readiness
    finally:
        server.stop()


def test_metrics_are_exposed(served: tuple[str, Metrics, Readiness]) -> None:
    url, metrics, _ = served
    metrics.events_consumed.inc(3)
    metrics.dead_lettered.labels("not_json", "decode").inc()
    metrics.tasks_imported.labels("7").inc(2)
    body = httpx.get(f"{url}/metrics").text
    assert "ingest_events_consumed_total 3.0" in body
    assert 'ingest_events_dead_lettered_total{reason="not_json",stage="decode"} 1.0' in body
    assert 'ingest_tasks_imported_total{project_id="7"} 2.0' in body
    assert "ingest_import_duration_seconds" in body
    assert "ingest_consumer_lag" in body


def test_openmetrics_is_negotiated(served: tuple[str, Metrics, Readiness]) -> None:
    url, _, _ = served
    response = httpx.get(f"{url}/metrics", headers={"Accept": "application/openmetrics-text"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


def test_liveness_and_readiness(served: tuple[str, Metrics, Readiness]) -> None:
    url, _, readiness = served
    assert httpx.get(f"{url}/healthz").status_code == 200
    response = httpx.get(f"{url}/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "not ready", "partitions_assigned": 0}
    readiness.ready = True
    assert httpx.get(f"{url}/readyz").status_code == 200


def test_anything_else_is_not_found(served: tuple[str, Metrics, Readiness]) -> None:
    url, _, _ = served
    assert httpx.get(f"{url}/").status_code == 404
    assert httpx.get(f"{url}/metrics/extra").status_code == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "HEAD"])
def test_only_get_is_served(served: tuple[str, Metrics, Readiness], method: str) -> None:
    url, _, _ = served
    response = httpx.request(method, f"{url}/metrics", content=b'{"x": 1}' * 100)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"


@pytest.mark.parametrize(
    "path", ["/../../etc/passwd", "/metrics/../healthz/..", "/%2e%2e/etc/passwd", "/debug/pprof", "/admin"]
)
def test_nothing_else_is_reachable(served: tuple[str, Metrics, Readiness], path: str) -> None:
    url, _, _ = served
    with httpx.Client() as client:
        response = client.send(client.build_request("GET", f"{url}{path}"))
    assert response.status_code == 404
    assert response.json() == {"status": "not found"}


def test_errors_reveal_no_server_details(served: tuple[str, Metrics, Readiness]) -> None:
    url, _, _ = served
    response = httpx.request("BREW", f"{url}/metrics")  # an unknown method: the server's own error page
    assert response.status_code == 501
    assert response.headers["content-type"] == "application/json"
    assert "Python" not in response.headers["server"] + response.text
    assert "Python" not in httpx.get(f"{url}/healthz").headers["server"]


def test_a_failing_readiness_check_answers_not_ready() -> None:
    def broken() -> tuple[bool, dict[str, Any]]:
        raise RuntimeError("boom")

    server = HealthServer("127.0.0.1", 0, Metrics().registry, broken)
    server.start()
    try:
        assert httpx.get(f"http://127.0.0.1:{server.port}/readyz").status_code == 503
    finally:
        server.stop()

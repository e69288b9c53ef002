"""A real Prometheus scrapes a running consumer; the dashboard's throughput and lag queries return data."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.consumer.runner import ConsumerProcess, Rig, eventually
from tests.deploy.manifests import dashboard, grafana_to_promql
from tests.deploy.scrape import publish_traffic, wait_processed
from tests.harness import free_port

PROMETHEUS = "/usr/bin/prometheus"


@pytest.fixture
def prometheus(tmp_path: Path, consumer: ConsumerProcess) -> Iterator[str]:
    """Prometheus on a free 127.0.0.1 port scraping the consumer every second; yields its base URL."""
    if not Path(PROMETHEUS).is_file():
        pytest.fail(
            f"{PROMETHEUS} is missing: `apt-get install -y --no-install-recommends prometheus` (make tools)",
            pytrace=False,
        )
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "labelstudio-ingest",
                        "static_configs": [{"targets": [f"127.0.0.1:{consumer.port}"]}],
                    }
                ],
            }
        )
    )
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        eventually(lambda: _ready(url) or process.poll() is not None, message="prometheus not ready")
        assert process.poll() is None, (tmp_path / "prometheus.log").read_text()[-3000:]
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        shutil.rmtree(tmp_path / "tsdb", ignore_errors=True)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _query(url: str, expr: str) -> list[Any]:
    response = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5)
    body = response.json()
    assert body["status"] == "success", body
    result: list[Any] = body["data"]["result"]
    return result


def _answer(url: str, expr: str) -> Callable[[], list[Any]]:
    """A check for ``eventually``: the query's (possibly empty) result."""
    return lambda: _query(url, expr)


def _panel_queries(title: str) -> list[str]:
    (panel,) = [p for p in dashboard()["panels"] if p["title"] == title]
    return [grafana_to_promql(t["expr"]) for t in panel["targets"]]


@pytest.mark.integration
def test_prometheus_answers_the_dashboard_throughput_and_lag_queries(
    rig: Rig, consumer: ConsumerProcess, prometheus: str
) -> None:
    consumer.start().wait_ready()
    publish_traffic(rig)
    wait_processed(consumer, 3)
    publish_traffic(rig)  # a second wave, so rates over the scraped window are above zero
    wait_processed(consumer, 6)

    queries = [*_panel_queries("Throughput")[:2], *_panel_queries("Consumer lag")]
    for expr in queries:
        result = eventually(_answer(prometheus, expr), message=f"no data for {expr}")
        assert all("value" in series for series in result)
    throughput = _query(prometheus, _panel_queries("Throughput")[0])
    assert float(throughput[0]["value"][1]) > 0
    targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
    assert [t["health"] for t in targets] == ["up"]

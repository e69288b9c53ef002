"""A running consumer with labelled series: publish good, duplicate and bad events, wait for them."""

from __future__ import annotations

import uuid

from prometheus_client.parser import text_string_to_metric_families

from labelstudio_ingest.schemas import Target
from tests.consumer.runner import ConsumerProcess, Rig, eventually, prompt_event

SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}


def publish_traffic(rig: Rig, *, runs: int = 3) -> None:
    """``runs`` good events, one duplicate of the first, one record that is not JSON."""
    target = Target(project_name=f"deploy-{uuid.uuid4().hex[:8]}")
    events = [prompt_event(target=target) for _ in range(runs)]
    rig.publisher.events(rig.topic, [*events, events[0]])
    rig.publisher.raw(rig.topic, b"{not json", key=b"bad")


def wait_processed(consumer: ConsumerProcess, runs: int) -> None:
    eventually(
        lambda: (
            consumer.metric("ingest_runs_imported_total") >= runs
            and consumer.metric("ingest_events_dead_lettered_total") >= 1
        ),
        message="traffic not processed",
    )


def exported_names(consumer: ConsumerProcess) -> set[str]:
    """Every series name the consumer's /metrics declares (with the suffixes of its type) or shows."""
    response = consumer.get("/metrics")
    assert response is not None
    assert response.status_code == 200
    names: set[str] = set()
    for family in text_string_to_metric_families(response.text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names

"""One record that breaks Label Studio never stalls the records behind it (docs/CONSUMER.md,
"A record that breaks Label Studio"): on a one-partition topic, a run whose import Label Studio
answers with HTTP 500 every time, or never answers, is isolated and dead-lettered as
``server_error`` while the 30 runs behind it are imported once each. A Label Studio that is down
(/health failing too) still dead-letters nothing. A run holding U+0000 is refused at decode.

A proxy in front of the real Label Studio (``ls_proxy.HoldingProxy``) fails or hangs the imports
whose body holds a marker; everything else reaches Label Studio.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from labelstudio_ingest.consumer import deadletter as dl
from labelstudio_ingest.schemas import Target, encode
from tests.consumer.runner import Rig, eventually, project_titled, prompt_event, read_topic, run_ids_of
from tests.integration.ls_proxy import POISON_500_DETAIL, HoldingProxy

pytestmark = pytest.mark.integration

GOOD_BEHIND = 30


@pytest.fixture
def rig_partitions() -> int:
    return 1


@pytest.fixture
def marker() -> bytes:
    return f"POISON-{uuid.uuid4().hex}".encode()


@pytest.fixture
def proxy(rig: Rig, marker: bytes, request: pytest.FixtureRequest) -> Iterator[HoldingProxy]:
    kind = getattr(request, "param", "fail")
    proxy = HoldingProxy(
        rig.label_studio.url,
        fail_marker=marker if kind == "fail" else None,
        hang_marker=marker if kind == "hang" else None,
    ).start()
    yield proxy
    proxy.close()


def imported_once(rig: Rig, title: str, expected: set[str]) -> bool:
    project = project_titled(rig.ls_client, title)
    if project is None:
        return False
    counts = Counter(run_ids_of(rig.ls_client, project.id))
    assert all(n == 1 for n in counts.values()), f"runs imported twice: {counts}"
    return set(counts) == expected


def headers_of(record: Any) -> dict[str, str]:
    return {k: v.decode("utf-8", "replace") for k, v in record.headers}


@pytest.mark.parametrize("proxy", ["fail", "hang"], indirect=True)
def test_a_run_that_breaks_label_studio_is_dead_lettered_and_the_runs_behind_it_imported(
    rig: Rig, proxy: HoldingProxy, marker: bytes
) -> None:
    target = Target(project_name=f"it-poison-{uuid.uuid4().hex[:8]}")
    poison = prompt_event(target=target, prompts=[f"this prompt breaks Label Studio: {marker.decode()}"])
    good = [prompt_event(target=target) for _ in range(GOOD_BEHIND)]
    rig.publisher.events(rig.topic, [poison, *good])
    consumer = rig.consumer(LABEL_STUDIO_URL=proxy.url)
    try:
        consumer.start()
        expected = {str(e.run_id) for e in good}
        eventually(
            lambda: imported_once(rig, target.project_name or "", expected),
            timeout=180,
            message="the runs behind the poison record were not imported",
        )
        [letter] = read_topic(rig.bootstrap, f"{rig.topic}.dlq", expect=1)
        why = headers_of(letter)
        assert (why[dl.H_REASON], why[dl.H_STAGE]) == ("server_error", "import")
        assert json.loads(letter.value)["run_id"] == str(poison.run_id)
        if proxy.failed:
            assert POISON_500_DETAIL in why[dl.H_MESSAGE]
            assert rig.label_studio.api_key not in why[dl.H_MESSAGE]  # the echoed token is masked
        else:
            assert proxy.hung >= 1
            assert "ReadTimeout" in why[dl.H_MESSAGE]
        assert consumer.metric("ingest_events_dead_lettered_total", reason="server_error") == 1
        eventually(consumer.is_ready, timeout=30, message="not ready again after the isolation")
        assert consumer.terminate() == 0
    finally:
        consumer.kill()


def test_a_nul_record_is_dead_lettered_and_its_neighbours_imported(rig: Rig) -> None:
    target = Target(project_name=f"it-nul-{uuid.uuid4().hex[:8]}")
    before, after = prompt_event(target=target), prompt_event(target=target)
    nul = json.loads(encode(prompt_event(target=target)))
    nul["metadata"] = {"note": "a\u0000b"}
    rig.publisher.events(rig.topic, [before])
    rig.publisher.raw(rig.topic, json.dumps(nul).encode(), key=nul["run_id"].encode())
    rig.publisher.events(rig.topic, [after])
    consumer = rig.consumer()
    try:
        consumer.start()
        expected = {str(before.run_id), str(after.run_id)}
        eventually(lambda: imported_once(rig, target.project_name or "", expected), message="neighbours")
        [letter] = read_topic(rig.bootstrap, f"{rig.topic}.dlq", expect=1)
        why = headers_of(letter)
        assert (why[dl.H_REASON], why[dl.H_STAGE]) == ("invalid", "validate")
        assert why[dl.H_MESSAGE].startswith("metadata.note: holds U+0000")
        assert consumer.terminate() == 0
    finally:
        consumer.kill()


def test_label_studio_down_behind_the_proxy_is_an_outage_that_dead_letters_nothing(
    rig: Rig, proxy: HoldingProxy
) -> None:
    target = Target(project_name=f"it-poison-outage-{uuid.uuid4().hex[:8]}")
    first = [prompt_event(target=target) for _ in range(5)]
    during = [prompt_event(target=target) for _ in range(20)]
    rig.publisher.events(rig.topic, first)
    consumer = rig.consumer(LABEL_STUDIO_URL=proxy.url)
    try:
        consumer.start()
        eventually(
            lambda: imported_once(rig, target.project_name or "", {str(e.run_id) for e in first}),
            message="first runs",
        )
        rig.label_studio.stop()  # the proxy stays up: imports get no answer, /health fails too
        rig.publisher.events(rig.topic, during)
        eventually(
            lambda: consumer.metric("ingest_label_studio_retries_total") >= 5,
            timeout=120,
            message="the consumer did not retry through the outage",
        )
        rig.label_studio.start()
        expected = {str(e.run_id) for e in first + during}
        eventually(
            lambda: imported_once(rig, target.project_name or "", expected), timeout=180, message="all runs"
        )
        assert consumer.metric("ingest_events_dead_lettered_total") == 0
        assert consumer.terminate() == 0
    finally:
        consumer.kill()

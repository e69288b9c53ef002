"""The producer keeps the contract's "no U+0000" rule: it publishes U+FFFD instead and counts it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from labelstudio_ingest.producer import LabelStudioCallbackHandler

from .fakes import FakeListLLM
from .support import read_events

pytestmark = pytest.mark.integration


def test_a_prompt_holding_nul_is_published_with_a_replacement_character(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], make_handler: Callable[..., Any]
) -> None:
    topic = kafka_topic(1)
    handler: LabelStudioCallbackHandler = make_handler(bootstrap_servers=kafka_bootstrap, topic=topic)
    config: Any = {"callbacks": [handler], "metadata": {"note": "x\u0000y"}}

    FakeListLLM(responses=["an\u0000swer"]).invoke("pro\u0000mpt", config=config)

    assert handler.flush(60)
    [read] = read_events(kafka_bootstrap, topic, 1)  # decoded: the contract's decode took it
    assert read.event.prompts == ["pro\ufffdmpt"]
    assert read.event.generations[0][0].text == "an\ufffdswer"
    assert read.event.metadata["note"] == "x\ufffdy"
    assert handler.nul_replaced >= 3  # also any copy in the fake model's invocation parameters
